"""The JSON API beside the UI, mounted at /v1: ``GET /v1/reviews``, ``GET /v1/reviews/{id}``,
``POST /v1/reviews/{id}/decision``; a reviewer's key in ``Authorization: Bearer``. Errors in the kit's
shape (`ragyard.kit.errors`): 401 no key, 403 not a reviewer, 404, 409 decided already, 400 bad input
or an unsafe edit (the findings in the message)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from bentos.review.runtime import Runtime
from bentos.review.schemas import DecisionIn, DecisionOut, ReviewList, ReviewOut
from ragyard.kit.errors import ServiceError


async def _reviewer(request: Request) -> str:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    runtime: Runtime = request.app.state.runtime
    return await asyncio.to_thread(
        runtime.reviewers.reviewer_of, presented.strip() if scheme.lower() == "bearer" else ""
    )


# The id of the reviewer key the request carries (401/403 otherwise).
ReviewerKey = Annotated[str, Depends(_reviewer)]


def api_routes(runtime: Runtime) -> APIRouter:
    """The routes; the app that includes them keeps `runtime` in its state (its `_reviewer` reads it)."""
    routes = APIRouter()

    @routes.get("/reviews", response_model=ReviewList)
    async def list_reviews(
        _: ReviewerKey,
        status: Literal["pending", "approved", "edited", "rejected"] = "pending",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> ReviewList:
        store = runtime.store
        reviews = await asyncio.to_thread(store.listing, status, limit)
        return ReviewList(
            reviews=[ReviewOut.of(r) for r in reviews], pending=await asyncio.to_thread(store.pending_count)
        )

    @routes.get("/reviews/{review_id}", response_model=ReviewOut)
    async def get_review(review_id: str, _: ReviewerKey) -> ReviewOut:
        review = await asyncio.to_thread(runtime.store.get, review_id)
        if review is None:
            raise ServiceError(404, f"review {review_id!r}: no such review")
        return ReviewOut.of(review)

    @routes.post("/reviews/{review_id}/decision", response_model=DecisionOut)
    async def decide(review_id: str, body: DecisionIn, key_id: ReviewerKey) -> DecisionOut:
        outcome = await runtime.decisions.decide(review_id, body.decision, body.answer, body.comment, key_id)
        return DecisionOut(
            review=ReviewOut.of(outcome.review),
            pinned=outcome.pinned,
            dataset_run_id=outcome.dataset_run_id,
            outcome_event_id=outcome.outcome_event_id,
        )

    return routes

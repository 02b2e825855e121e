"""Wire schemas of the review bento's JSON API (`/v1/reviews`): the one place that defines them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bentos.review.store import Review


class ReviewOut(BaseModel):
    id: str = Field(description="The flag's event id.")
    status: Literal["pending", "approved", "edited", "rejected"]
    trace_id: str
    reason: str
    flagged_at: float
    question: str | None
    answer: str | None
    citations: list[dict[str, Any]]
    action: str | None = Field(description="What output safety did: flag, block, ...")
    categories: list[str] = Field(description="Output safety's findings: pii, toxicity, ...")
    model: str | None
    route: dict[str, Any] | None
    index_version: str | None
    score: float | None
    final_answer: str | None = Field(description="The answer approved or as edited; null while pending or rejected.")
    reviewer: str | None
    comment: str | None
    decided_at: float | None

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        flag = review.flag
        return cls(
            id=review.id,
            status=review.status,
            trace_id=flag.trace_id,
            reason=flag.reason,
            flagged_at=flag.occurred_at,
            question=flag.question,
            answer=flag.answer,
            citations=flag.citations,
            action=flag.action,
            categories=flag.categories,
            model=flag.model,
            route=flag.route,
            index_version=flag.index_version,
            score=flag.score,
            final_answer=review.final_answer,
            reviewer=review.reviewer,
            comment=review.comment,
            decided_at=review.decided_at,
        )


class ReviewList(BaseModel):
    reviews: list[ReviewOut] = Field(description="Oldest first.")
    pending: int = Field(description="Reviews waiting in all.")


class DecisionIn(BaseModel):
    decision: Literal["approve", "edit", "reject"]
    answer: str | None = Field(
        default=None, min_length=1, max_length=200_000, description="The new answer; required for edit only."
    )
    comment: str | None = Field(default=None, max_length=2000)


class DecisionOut(BaseModel):
    review: ReviewOut
    pinned: bool = Field(description="The answer is now pinned for the question and index version.")
    dataset_run_id: str | None = Field(description="The MLflow run with the dataset row; null when MLflow failed.")
    outcome_event_id: str | None = Field(
        description="The feedback.scored event (name 'review') for the router's training; null when it was not stored."
    )

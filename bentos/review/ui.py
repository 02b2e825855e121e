"""The web UI, server-rendered (jinja2, autoescaped), mounted at the root: ``/login``, ``/reviews`` (the
queue, oldest first), ``/reviews/{id}`` (one flag, its decision forms). A reviewer signs in once with
a key (`bentos.review.auth`); every form that changes something carries the session's CSRF token.
Every action is a native link, button or form field (Tab and Enter reach it); the keyboard shortcuts
of templates/base.html (j/k, a, r, e) are ignored inside text fields."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bentos.review.auth import COOKIE, Session
from bentos.review.decisions import UnsafeEdit
from bentos.review.runtime import Runtime
from bentos.review.store import Decision, Review
from ragyard.kit.errors import ServiceError

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def age(seconds: float) -> str:
    """3 s, 5 min, 2 h, 4 d: how long a flag has waited."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def ui_routes(runtime: Runtime) -> APIRouter:
    routes = APIRouter()
    config = runtime.settings.review

    def render(request: Request, name: str, status: int = 200, **context) -> Response:
        return templates.TemplateResponse(
            request, name, {"now": time.time(), "age": age, **context}, status_code=status
        )

    async def session_of(request: Request) -> Session | Response:
        """The reviewer's session, or the answer to give instead: to the login page, or a 403 page."""
        session = await asyncio.to_thread(runtime.reviewers.session, request.cookies.get(COOKIE))
        if session is None:
            return RedirectResponse("/login", status_code=303)
        try:
            await asyncio.to_thread(runtime.reviewers.check, session.key_id)
        except ServiceError as exc:
            return render(request, "error.html", exc.status, message=exc.message)
        return session

    @routes.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/reviews", status_code=303)

    @routes.get("/login")
    async def login_page(request: Request) -> Response:
        return render(request, "login.html")

    @routes.post("/login")
    async def login(request: Request, key: Annotated[str, Form(max_length=200)] = "") -> Response:
        try:
            key_id = await asyncio.to_thread(runtime.reviewers.reviewer_of, key.strip())
        except ServiceError as exc:
            return render(request, "login.html" if exc.status == 401 else "error.html", exc.status, message=exc.message)
        _, cookie = runtime.reviewers.open_session(key_id)
        response = RedirectResponse("/reviews", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=config.session_max_age_s,
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
        )
        return response

    @routes.post("/logout")
    async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        session = await session_of(request)
        if isinstance(session, Response):
            return session
        if not session.csrf_ok(csrf):
            return render(request, "error.html", 403, message="The form expired: reload the page and try again.")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @routes.get("/reviews")
    async def queue(request: Request, decided: str | None = None) -> Response:
        session = await session_of(request)
        if isinstance(session, Response):
            return session
        reviews = await asyncio.to_thread(runtime.store.listing, "pending", config.page_size)
        pending = await asyncio.to_thread(runtime.store.pending_count)
        just = await asyncio.to_thread(runtime.store.get, decided) if decided else None
        return render(request, "queue.html", session=session, reviews=reviews, pending=pending, just=just)

    async def review_page(request: Request, session: Session, review: Review, status: int = 200, **context) -> Response:
        pending = await asyncio.to_thread(runtime.store.listing, "pending", config.page_size)
        ids = [r.id for r in pending]
        at = ids.index(review.id) if review.id in ids else None
        return render(
            request,
            "review.html",
            status,
            session=session,
            review=review,
            previous=ids[at - 1] if at else None,
            next=ids[at + 1] if at is not None and at + 1 < len(ids) else None,
            **context,
        )

    @routes.get("/reviews/{review_id}")
    async def show(request: Request, review_id: str, decided: str | None = None) -> Response:
        session = await session_of(request)
        if isinstance(session, Response):
            return session
        review = await asyncio.to_thread(runtime.store.get, review_id)
        if review is None:
            return render(request, "error.html", 404, message=f"No review {review_id}.")
        just = await asyncio.to_thread(runtime.store.get, decided) if decided else None
        return await review_page(request, session, review, just=just)

    @routes.post("/reviews/{review_id}/decision")
    async def decide(
        request: Request,
        review_id: str,
        decision: Annotated[Decision, Form()],
        csrf: Annotated[str, Form()] = "",
        answer: Annotated[str | None, Form(max_length=200_000)] = None,
        comment: Annotated[str | None, Form(max_length=2000)] = None,
    ) -> Response:
        session = await session_of(request)
        if isinstance(session, Response):
            return session
        if not session.csrf_ok(csrf):
            return render(request, "error.html", 403, message="The form expired: reload the page and try again.")
        review = await asyncio.to_thread(runtime.store.get, review_id)
        if review is None:
            return render(request, "error.html", 404, message=f"No review {review_id}.")
        # The review after this one, read before it leaves the pending list.
        pending = [r.id for r in await asyncio.to_thread(runtime.store.listing, "pending", config.page_size)]
        after = pending[pending.index(review_id) + 1 :] if review_id in pending else pending
        try:
            await runtime.decisions.decide(review_id, decision, answer, comment or None, session.key_id)
        except UnsafeEdit as exc:
            return await review_page(
                request, session, review, 400, error=exc.message, findings=exc.findings, edited=answer
            )
        except ServiceError as exc:  # 404, 409 decided already, 400, 503 safety down
            current = await asyncio.to_thread(runtime.store.get, review_id) or review
            return await review_page(request, session, current, exc.status, error=exc.message, edited=answer)
        target = f"/reviews/{after[0]}" if after else "/reviews"
        return RedirectResponse(f"{target}?decided={review_id}", status_code=303)

    return routes

"""What a reviewer's decision does, once, whether it came from the web UI or the JSON API.

- approve / edit: the answer (as edited) is pinned for the flag's question and index version
  (`router.pinned`: the router's cache serves it first); an edit must pass the output safety check
  first, else it is refused with the findings and nothing changes.
- every decision: a row in the reviewed-answers dataset (MLflow, `bentos.review.dataset`) and an
  outcome for the router's training, a `feedback.scored` event named "review" on the flag's trace:
  approve 1, edit 0.5 (the answer needed a change), reject 0.
- a second decision on one review is refused (409) and changes nothing.

The decision is recorded first (that is what makes a second one a no-op); the pin and the event follow
(the event through the publisher's outbox, so it is not lost); an event neither the broker nor the
outbox took, or a dataset row MLflow did not take, is logged and reported in the answer, not retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from bentos.review.dataset import ReviewedAnswers
from bentos.review.metrics import review_metrics
from bentos.review.store import Decision, Review, ReviewStore
from ragyard.clients.safety import SafetyClient
from ragyard.contracts.safety import Finding
from ragyard.events.publisher import EventNotStored, Publisher
from ragyard.events.schema import FeedbackScored
from ragyard.kit.errors import Rejected, ServiceError
from router.pinned import PinnedAnswer, PinnedAnswers

logger = logging.getLogger("ragyard.review")
OUTCOME_VALUES: dict[Decision, float] = {"approve": 1.0, "edit": 0.5, "reject": 0.0}
PRODUCER = "review"


class UnsafeEdit(ServiceError):
    """The edited answer failed the output safety check: refused, with what was found."""

    def __init__(self, action: str, findings: list[Finding]):
        found = ", ".join(f"{f.category} ({f.type}, score {f.score:.2f})" for f in findings) or "no details"
        super().__init__(
            400, f"answer: the output safety check refused the edit ({action}): {found}", param="answer", code="unsafe"
        )
        self.findings = findings


@dataclass(frozen=True)
class Outcome:
    review: Review
    pinned: bool
    dataset_run_id: str | None  # None: MLflow did not take the row (logged)
    outcome_event_id: str | None  # None: neither the broker nor the outbox took it (logged)


def outcome_event_id(review_id: str) -> str:
    """One outcome event per review, whatever retries publish it: consumers drop the copies by id."""
    return "review-" + hashlib.sha256(review_id.encode()).hexdigest()[:32]


class Decisions:
    def __init__(
        self,
        store: ReviewStore,
        pinned: PinnedAnswers,
        safety: SafetyClient,
        safety_policy: str,
        publisher: Publisher,
        dataset: ReviewedAnswers,
    ):
        self.store, self.pinned, self.safety, self.safety_policy = store, pinned, safety, safety_policy
        self.publisher, self.dataset = publisher, dataset

    async def decide(
        self, review_id: str, decision: Decision, edited: str | None, comment: str | None, reviewer: str
    ) -> Outcome:
        review = await asyncio.to_thread(self.store.get, review_id)
        if review is None:
            raise ServiceError(404, f"review {review_id!r}: no such review")
        final = self._final_answer(review, decision, edited)
        if not review.pending:
            raise already_decided(review)
        if decision == "edit" and final is not None:
            try:
                verdict = await self.safety.check(final, "output", self.safety_policy)
            except Rejected as exc:  # e.g. longer than the safety bento takes
                raise ServiceError(
                    400, f"answer: the safety check refused it: {exc.error.message}", param="answer"
                ) from None
            if verdict.action != "allow":
                raise UnsafeEdit(verdict.action, verdict.findings)
        if not await asyncio.to_thread(self.store.decide, review_id, decision, final, reviewer, comment):
            decided = await asyncio.to_thread(self.store.get, review_id)
            raise already_decided(decided or review)
        review_metrics().decisions.labels(decision=decision).inc()
        flag = review.flag
        if final is not None and flag.question:
            answer = PinnedAnswer(final, flag.citations, flag.model or "review", review_id)
            await asyncio.to_thread(self.pinned.pin, flag.question, flag.index_version, answer)
        event = FeedbackScored(
            id=outcome_event_id(review_id),
            producer=PRODUCER,
            trace_id=flag.trace_id,
            name="review",
            value=OUTCOME_VALUES[decision],
            comment=comment,
            key_id=flag.key_id,
        )
        try:
            await self.publisher.publish(event)
            event_id: str | None = event.id
        except EventNotStored:  # neither the broker nor the outbox: the decision stands, reported
            logger.exception("review %s: its outcome event was not stored", review_id)
            event_id = None
        row = {
            "review_id": review_id,
            "trace_id": flag.trace_id,
            "decision": decision,
            "reason": flag.reason,
            "question": flag.question,
            "original_answer": flag.answer,
            "final_answer": final,
            "index_version": flag.index_version,
            "model": flag.model,
            "reviewer": reviewer,
            "comment": comment,
        }
        try:
            run_id: str | None = await asyncio.to_thread(self.dataset.record, row)
        except Exception:  # noqa: BLE001 - MLflow down or refusing: the decision stands, the row is reported missing
            logger.exception("review %s: the reviewed-answers row was not recorded in MLflow", review_id)
            run_id = None
        decided = await asyncio.to_thread(self.store.get, review_id)
        assert decided is not None, "the review was just decided"
        return Outcome(decided, final is not None and bool(flag.question), run_id, event_id)

    @staticmethod
    def _final_answer(review: Review, decision: Decision, edited: str | None) -> str | None:
        """The answer to pin (None for a rejection); a 400 when there is none to pin."""
        if decision == "reject":
            return None
        if not review.flag.question:
            raise ServiceError(
                400, "decision: this flag carries no question to pin an answer for; reject it", param="decision"
            )
        if decision == "approve":
            if not review.flag.answer:
                raise ServiceError(400, "decision: this flag carries no answer to approve; edit it", param="decision")
            return review.flag.answer
        if edited is None or not edited.strip():
            raise ServiceError(400, "answer: an edit needs the new answer", param="answer")
        return edited


def already_decided(review: Review) -> ServiceError:
    return ServiceError(
        409,
        f"review {review.id}: already decided ({review.status} by {review.reviewer}); nothing changed",
        code="already_decided",
    )

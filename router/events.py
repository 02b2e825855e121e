"""The router's events on the broker (ragyard.events): feedback scores and flagged answers.

`POST /v1/feedback` publishes a `feedback.scored` event and answers 202 only once it is stored (broker
confirm, or the outbox in the router's state database); a score below `flag_feedback_below` also
flags its answer (`answer.flagged`, negative_feedback). An answer the output safety check flagged,
held for review or blocked is flagged too (output_safety), and so is a RAG answer with claims its
passages do not hold (low_groundedness), with the question and answer as the router keeps them. The
feedback consumer, in every router process, exports each score to Langfuse (or MLflow) and acks it
once exported; the review queue holds the flags until its consumer (the review bento) comes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ragyard.events.consumer import Consumer
from ragyard.events.publisher import EventNotStored, Publisher
from ragyard.events.schema import MAX_UNSUPPORTED, AnswerFlagged, Event, FeedbackScored, FlagReason
from ragyard.events.store import EventStore
from ragyard.events.topology import FEEDBACK, TOPOLOGY, Topology
from ragyard.grounding import Grounding
from ragyard.settings import RouterBentoSettings
from router.guardrails import Verdict
from router.state import database

logger = logging.getLogger("ragyard.router.events")
PRODUCER = "router"
# Output safety actions that put an answer in front of a reviewer.
FLAGGING_ACTIONS = ("flag", "review", "block")


@dataclass(frozen=True)
class AnsweredTurn:
    """What a reviewer sees of an answer (as the router keeps it: with the input's pseudonyms)."""

    trace_id: str
    question: str | None
    answer: str
    citations: list[dict]
    model: str
    route: dict | None
    key_id: str
    index_version: str | None

    def flag(self, reason: FlagReason, unsupported: list[str], **fields) -> AnswerFlagged:
        return AnswerFlagged(
            producer=PRODUCER,
            trace_id=self.trace_id,
            reason=reason,
            question=self.question,
            answer=self.answer,
            citations=self.citations,
            model=self.model,
            route=self.route,
            key_id=self.key_id,
            index_version=self.index_version,
            unsupported=unsupported,
            **fields,
        )


def flag_for(
    turn: AnsweredTurn, verdict: Verdict, checked: Grounding | None, unsupported_at: int
) -> AnswerFlagged | None:
    """One flag per answer: output_safety when the policy flagged, held or blocked it; else
    low_groundedness when at least `unsupported_at` (> 0) of its claims are in none of its passages."""
    unsupported = list(checked.unsupported[:MAX_UNSUPPORTED]) if checked else []
    if verdict.action in FLAGGING_ACTIONS:
        return turn.flag("output_safety", unsupported, action=verdict.action, categories=verdict.categories)
    if checked and unsupported_at and len(checked.unsupported) >= unsupported_at:
        return turn.flag("low_groundedness", unsupported, score=checked.score)
    return None


class RouterEvents:
    def __init__(self, settings: RouterBentoSettings, exporter, topology: Topology = TOPOLOGY):
        """exporter: what traces go to (router.tracing), whose `score` receives the feedback."""
        self.flag_below = settings.router.flag_feedback_below
        self.flag_unsupported = settings.router.flag_unsupported_claims
        self.exporter = exporter
        self.store = EventStore(database(settings, "events"))
        self.publisher = Publisher(settings.broker, self.store, "router", topology)
        self.feedback_consumer = Consumer(
            settings.broker, self.store, FEEDBACK, self.export_score, "router-feedback", topology
        )

    def start(self) -> None:
        """In the event loop that serves requests: connects in the background, never waits for the broker."""
        self.publisher.start()
        self.feedback_consumer.start()

    async def publish(self, event: Event) -> str:
        """Where the event is stored ("broker" or "outbox"); raises EventNotStored."""
        return await self.publisher.publish(event)

    async def feedback(self, trace_id: str, name: str, value: float, comment: str | None, key_id: str | None) -> None:
        """Once this returns the score is stored and will be exported; raises EventNotStored."""
        await self.publish(
            FeedbackScored(producer=PRODUCER, trace_id=trace_id, name=name, value=value, comment=comment, key_id=key_id)
        )
        if value < self.flag_below:
            await self.publish(
                AnswerFlagged(
                    producer=PRODUCER, trace_id=trace_id, reason="negative_feedback", score=value, key_id=key_id
                )
            )

    async def answered(self, turn: AnsweredTurn, verdict: Verdict, checked: Grounding | None) -> None:
        """Flag the answer when it needs a reviewer (`flag_for`). The answer has been given by now: a
        flag that cannot be stored is logged and counted (ragyard_events_dropped_total), not raised."""
        flag = flag_for(turn, verdict, checked, self.flag_unsupported)
        if flag is None:
            return
        try:
            await self.publish(flag)
        except EventNotStored as exc:
            logger.error("answer %s was not flagged for review: %s", turn.trace_id, exc)

    async def export_score(self, event: Event) -> None:
        assert isinstance(event, FeedbackScored)  # the consumer's queue holds feedback.scored only
        await asyncio.to_thread(self.exporter.score, event.trace_id, event.name, event.value, event.comment, event.id)

    async def close(self) -> None:
        await self.feedback_consumer.close()
        await self.publisher.close()
        self.store.close()

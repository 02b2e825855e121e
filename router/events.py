"""The router's events on the broker (ragyard.events): feedback scores and flagged answers.

`POST /v1/feedback` publishes a `feedback.scored` event and answers 202 only once it is stored (broker
confirm, or the outbox in the router's state database); a score below `flag_feedback_below` also
flags its answer (`answer.flagged`, negative_feedback). An answer the output safety check flagged or
blocked is flagged too (output_safety), with the question and answer as the router keeps them. The
feedback consumer, in every router process, exports each score to Langfuse (or MLflow) and acks it
once exported; the review queue holds the flags until its consumer (the review bento) comes.
"""

from __future__ import annotations

import asyncio
import logging

from ragyard.events.consumer import Consumer
from ragyard.events.publisher import EventNotStored, Publisher
from ragyard.events.schema import AnswerFlagged, Event, FeedbackScored
from ragyard.events.store import EventStore
from ragyard.events.topology import FEEDBACK, TOPOLOGY, Topology
from ragyard.settings import RouterBentoSettings
from router.guardrails import Verdict
from router.state import database

logger = logging.getLogger("ragyard.router.events")
PRODUCER = "router"
# Output safety actions that put an answer in front of a reviewer.
FLAGGING_ACTIONS = ("flag", "block")


class RouterEvents:
    def __init__(self, settings: RouterBentoSettings, exporter, topology: Topology = TOPOLOGY):
        """exporter: what traces go to (router.tracing), whose `score` receives the feedback."""
        self.flag_below = settings.router.flag_feedback_below
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

    async def output_checked(
        self,
        trace_id: str,
        verdict: Verdict,
        question: str,
        answer: str,
        citations: list[dict],
        model: str,
        route: dict | None,
        key_id: str,
        index_version: str | None = None,
    ) -> None:
        """Flag the answer when output safety flagged or blocked it. The answer has been given by now:
        a flag that cannot be stored is logged and counted (ragyard_events_dropped_total), not raised."""
        if verdict.action not in FLAGGING_ACTIONS:
            return
        try:
            await self.publish(
                AnswerFlagged(
                    producer=PRODUCER,
                    trace_id=trace_id,
                    reason="output_safety",
                    question=question,
                    answer=answer,
                    citations=citations,
                    action=verdict.action,
                    categories=verdict.categories,
                    model=model,
                    route=route,
                    key_id=key_id,
                    index_version=index_version,
                )
            )
        except EventNotStored as exc:
            logger.error("answer %s was not flagged for review: %s", trace_id, exc)

    async def export_score(self, event: Event) -> None:
        assert isinstance(event, FeedbackScored)  # the consumer's queue holds feedback.scored only
        await asyncio.to_thread(self.exporter.score, event.trace_id, event.name, event.value, event.comment, event.id)

    async def close(self) -> None:
        await self.feedback_consumer.close()
        await self.publisher.close()
        self.store.close()

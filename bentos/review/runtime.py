"""The review bento's parts, built once from its settings: the queue and its consumer of flags, the
reviewers, and what decisions touch (pinned answers, safety, the outcome events, the dataset)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from bentos.review.auth import Reviewers
from bentos.review.dataset import ReviewedAnswers
from bentos.review.decisions import Decisions
from bentos.review.metrics import review_metrics
from bentos.review.store import ReviewStore
from ragyard.clients.safety import SafetyClient
from ragyard.events.consumer import Consumer
from ragyard.events.publisher import Publisher
from ragyard.events.schema import AnswerFlagged, Event
from ragyard.events.store import EventStore
from ragyard.events.topology import FLAGS
from ragyard.local_secret import local_secret
from ragyard.settings import ReviewBentoSettings
from router.keys import KeyStore
from router.pinned import PinnedAnswers
from router.state import database

logger = logging.getLogger("ragyard.review")
# How often the queue's gauges are read from the database (besides after each flag and decision).
QUEUE_METRICS_INTERVAL_S = 5.0


class Runtime:
    def __init__(self, settings: ReviewBentoSettings):
        config = settings.review
        self.settings = settings
        self.store = ReviewStore(database(settings, "review"))
        self.keys = KeyStore(database(settings, "keys"))
        secret = config.session_secret or local_secret(settings.home / "review" / "session_secret")
        self.reviewers = Reviewers(self.keys, secret, config.session_max_age_s)
        self.pinned = PinnedAnswers(database(settings, "cache"))  # the router's cache reads them
        self.events = EventStore(database(settings, "review-events"))
        self.publisher = Publisher(settings.broker, self.events, "review")
        self.consumer = Consumer(settings.broker, self.events, FLAGS, self.queue_flag, "review-flags")
        self.safety = SafetyClient(settings.safety.url)
        self.decisions = Decisions(
            self.store,
            self.pinned,
            self.safety,
            config.safety_policy,
            self.publisher,
            ReviewedAnswers(settings.mlflow.url, config.experiment),
        )

        self._watching: asyncio.Task | None = None

    def start(self) -> None:
        """In the serving event loop: connects to the broker in the background."""
        self.publisher.start()
        self.consumer.start()
        self._watching = asyncio.get_running_loop().create_task(self._watch_queue())

    async def queue_flag(self, event: Event) -> None:
        assert isinstance(event, AnswerFlagged)  # the consumer's queue holds answer.flagged only
        if not await asyncio.to_thread(self.store.add, event):
            logger.info("flag %s is queued already", event.id)
        await self.count_queue()

    async def count_queue(self) -> None:
        """Set the queue's gauges from the database (other replicas decide too)."""
        pending = await asyncio.to_thread(self.store.pending_count)
        oldest = await asyncio.to_thread(self.store.oldest_pending_at)
        metrics = review_metrics()
        metrics.pending.set(pending)
        metrics.oldest.set(max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    async def _watch_queue(self) -> None:
        while True:
            try:
                await self.count_queue()
            except Exception:  # noqa: BLE001 - a database hiccup: the next round tries again
                logger.exception("could not count the review queue")
            await asyncio.sleep(QUEUE_METRICS_INTERVAL_S)

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
        await self.consumer.close()
        await self.publisher.close()
        await self.safety.aclose()
        for store in (self.events, self.store, self.keys, self.pinned):
            store.close()

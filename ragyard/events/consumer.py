"""Consuming a queue: each delivery is handled, then acknowledged; nothing is acked before its work
is done, and no event's work is done twice.

- Duplicates (the same event id again: a redelivery, an event published twice) are acked and skipped:
  the ids of processed events are kept in the state database, written after the work and before the
  ack. A crash between the two redoes the work once, and so may two consumer processes that get the
  two copies of one event at the same moment: a handler's effect should be idempotent too.
- A malformed event is dead-lettered at once with the reason (header `x-ragyard-dead-reason`).
- A handler that raises `Unprocessable` dead-letters the event at once, with its message as reason.
- A handler that raises anything else is retried after the topology's delays (1 s, 10 s, 60 s):
  a copy waits in a retry queue, the original is acked; after the last retry it is dead-lettered.
- A delivery never acknowledged (the consumer crashes on it, again and again) is dead-lettered by
  the broker after the delivery limit (`x-first-death-reason: delivery_limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
)

from ragyard.events.connection import BrokerLink
from ragyard.events.metrics import event_metrics
from ragyard.events.publisher import PUBLISH_FAILURES, amqp_message
from ragyard.events.schema import Event, MalformedEvent, decode
from ragyard.events.store import EventStore
from ragyard.events.topology import (
    ATTEMPT_HEADER,
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    TOPOLOGY,
    QueueSpec,
    Topology,
)
from ragyard.settings import BrokerSettings

logger = logging.getLogger("ragyard.events")
Handler = Callable[[Event], Awaitable[None]]
# Processed ids older than this are forgotten: no redelivery comes that late.
PROCESSED_RETENTION_S = 7 * 24 * 3600


class Unprocessable(Exception):
    """The event can never be processed (e.g. it names an unknown source): dead-letter it, don't retry."""


class Consumer:
    """Consumes `spec`'s queue with `handler`, in the event loop that calls `start`."""

    def __init__(
        self,
        settings: BrokerSettings,
        store: EventStore,
        spec: QueueSpec,
        handler: Handler,
        name: str,
        topology: Topology = TOPOLOGY,
        prefetch: int | None = None,
    ):
        self.settings, self.store, self.spec, self.handler = settings, store, spec, handler
        self.topology = topology
        self.queue_name = topology.queue(spec)
        self.prefetch = prefetch or settings.prefetch
        self.link = BrokerLink(settings, topology, name, on_ready=self._consume)
        self.queue: AbstractQueue | None = None  # a strong reference: see BrokerLink
        self._in_flight: dict[str, asyncio.Lock] = {}
        self.metrics = event_metrics()

    def start(self) -> None:
        self.store.forget_processed(PROCESSED_RETENTION_S)
        self.link.start()

    async def _consume(self, channel: AbstractRobustChannel) -> None:
        await channel.set_qos(prefetch_count=self.prefetch)
        self.queue = queue = await channel.get_queue(self.queue_name)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.body)
            if event.routing_key not in self.spec.event_types:
                raise MalformedEvent(f"type: {event.routing_key!r} does not belong on {self.queue_name}")
        except MalformedEvent as exc:
            await self._dead_letter(message, f"malformed: {exc}")
            return
        # Deliveries are handled concurrently: two of one event (published twice) take turns here.
        lock = self._in_flight.setdefault(event.id, asyncio.Lock())
        try:
            async with lock:
                if await asyncio.to_thread(self.store.processed, self.queue_name, event.id):
                    await message.ack()
                    self._count("duplicate")
                    return
                # Shielded: a broker that goes away mid-work cancels the delivery, and the work done must
                # still be recorded, or its redelivery would do it again.
                await asyncio.shield(self._work(event))
        except Unprocessable as exc:
            await self._dead_letter(message, f"unprocessable: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any failure of the work: retried, then dead-lettered
            await self._retry(message, exc)
            return
        finally:
            if not lock.locked():
                self._in_flight.pop(event.id, None)
        await message.ack()
        self._count("done")

    async def _work(self, event: Event) -> None:
        """The handler's work, then its record (what makes a later copy of the event a duplicate)."""
        await self.handler(event)
        await asyncio.to_thread(self.store.mark_processed, self.queue_name, event.id)

    async def _retry(self, message: AbstractIncomingMessage, error: Exception) -> None:
        previous = (message.headers or {}).get(ATTEMPT_HEADER, 0)
        attempt = (previous if isinstance(previous, int) else 0) + 1  # the header is ours: an int
        cause = f"{type(error).__name__}: {error}"[:500]
        if attempt > len(self.topology.retry_delays_s):
            await self._dead_letter(message, f"failed {attempt} times, last: {cause}")
            return
        logger.warning(
            "%s: event %s failed (attempt %d), retrying later: %s", self.queue_name, message.message_id, attempt, cause
        )
        target = self.topology.retry_queue(self.spec, attempt)
        if await self._forward(message, "", target, {ATTEMPT_HEADER: attempt}):
            self._count("retried")

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        logger.warning("%s: dead-lettering %s: %s", self.queue_name, message.message_id, reason)
        headers = {DEAD_REASON_HEADER: reason[:1000], DEAD_QUEUE_HEADER: self.queue_name}
        routing_key = message.routing_key or message.type or "unknown"
        if await self._forward(message, self.topology.dead_exchange, routing_key, headers):
            self._count("dead")

    async def _forward(self, message: AbstractIncomingMessage, exchange: str, routing_key: str, headers: dict) -> bool:
        """A copy of the message to `exchange` with `headers` added, confirmed, then the original acked.
        Not confirmed (the broker is going away): the original is left unacked, so it comes back."""
        channel = self.link.channel
        if channel is None:  # the broker is gone: the original comes back when it is
            return False
        kept = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        copy = amqp_message(message.message_id or "", message.type or "", message.body, {**kept, **headers})
        timeout = self.settings.publish_timeout_s
        try:
            target = channel.default_exchange if not exchange else await channel.get_exchange(exchange, ensure=False)
            await asyncio.wait_for(target.publish(copy, routing_key, timeout=timeout), timeout)
            await message.ack()
        except PUBLISH_FAILURES as exc:
            logger.warning(
                "%s: could not forward %s to %r (%r); it will be redelivered",
                self.queue_name,
                message.message_id,
                exchange or routing_key,
                exc,
            )
            with contextlib.suppress(*PUBLISH_FAILURES):  # a closed channel returns it by itself
                await message.nack(requeue=True)
            return False
        return True

    def _count(self, outcome: str) -> None:
        self.metrics.consumed.labels(queue=self.queue_name, outcome=outcome).inc()

    async def close(self) -> None:
        await self.link.close()

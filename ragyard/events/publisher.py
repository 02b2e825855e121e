"""Publishing an event so that it is never lost: `publish` returns only once the event is durably
stored, either confirmed by the broker or committed to the outbox in the state database. A relay task
sends the outbox to the broker whenever it is reachable, and deletes each row once confirmed.

The broker is tried first, with a confirm and a timeout: a channel that is closed (broker down, or
reconnecting), a publish that fails or times out (a memory alarm blocks publishers) sends the event to
the outbox. A timed-out publish may still reach the broker later, so the event can arrive twice:
consumers drop duplicates by event id.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import aio_pika
import sqlalchemy.exc
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from ragyard.events.connection import BrokerLink
from ragyard.events.metrics import event_metrics
from ragyard.events.schema import SCHEMA_VERSION, Event, encode
from ragyard.events.store import EventStore
from ragyard.events.topology import TOPOLOGY, Topology
from ragyard.settings import BrokerSettings

logger = logging.getLogger("ragyard.events")
# What a publish can fail with when the broker is down, going down, blocked or refusing.
PUBLISH_FAILURES = (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError, DeliveryError, PublishError)
# A relay that claimed outbox rows and died leaves them to others after this.
CLAIM_LEASE_S = 30.0


class EventNotStored(RuntimeError):
    """Neither the broker nor the outbox took the event: the caller must say so (a 503), not accept it."""


def amqp_message(event_id: str, event_type: str, body: bytes, headers: dict | None = None) -> aio_pika.Message:
    return aio_pika.Message(body, message_id=event_id, type=event_type, content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            headers={"schema_version": SCHEMA_VERSION, **(headers or {})})


class Publisher:
    """Start it in the event loop that publishes (`start`), close it there (`close`)."""

    def __init__(self, settings: BrokerSettings, store: EventStore, name: str, topology: Topology = TOPOLOGY):
        self.settings, self.store, self.topology = settings, store, topology
        self.link = BrokerLink(settings, topology, name, on_ready=self._on_ready)
        self.metrics = event_metrics()
        self._wake = asyncio.Event()
        self._relay: asyncio.Task | None = None

    def start(self) -> None:
        self.link.start()
        self._relay = asyncio.create_task(self._relay_forever(), name=f"outbox-relay-{self.link.name}")

    async def _on_ready(self, channel) -> None:
        # Wake the relay whenever the channel comes back after a broker outage.
        channel.reopen_callbacks.add(lambda *_: self._wake.set())
        self._wake.set()

    async def publish(self, event: Event) -> Literal["broker", "outbox"]:
        """Where the event is now durably stored; raises EventNotStored when nowhere."""
        body = encode(event)
        if await self._send(event.id, event.routing_key, body):
            self.metrics.published.labels(type=event.routing_key, path="broker").inc()
            return "broker"
        try:
            await asyncio.to_thread(self.store.add, event.id, event.routing_key, body)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            self.metrics.dropped.labels(type=event.routing_key).inc()
            logger.error("event %s (%s) not stored: broker and outbox unavailable: %s", event.id, event.routing_key, exc)
            raise EventNotStored(f"the event broker and the outbox are unavailable ({type(exc).__name__})") from exc
        self.metrics.published.labels(type=event.routing_key, path="outbox").inc()
        self._wake.set()
        return "outbox"

    async def _send(self, event_id: str, event_type: str, body: bytes) -> bool:
        """True once the broker confirmed; False when it did not (down, blocked, nack, unroutable)."""
        exchange = self.link.exchange
        if not self.link.ready or exchange is None:
            return False
        timeout = self.settings.publish_timeout_s
        try:
            # wait_for too: publishing on a reconnecting channel awaits the connection without a timeout.
            await asyncio.wait_for(exchange.publish(amqp_message(event_id, event_type, body), event_type,
                                                    timeout=timeout), timeout)
        except PUBLISH_FAILURES as exc:
            logger.debug("publish of %s not confirmed: %r", event_id, exc)
            return False
        return True

    async def _relay_forever(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.relay_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.relay_once()
            except sqlalchemy.exc.SQLAlchemyError as exc:  # the state database is away: try again later
                logger.warning("outbox relay: state database unavailable: %s", exc)

    async def relay_once(self) -> None:
        """Send what the outbox holds while the broker takes it; refresh the backlog gauges."""
        while self.link.ready:
            rows = await asyncio.to_thread(self.store.claim, self.settings.relay_batch, CLAIM_LEASE_S)
            if not rows:
                break
            sent = await asyncio.gather(*(self._send(r.event_id, r.routing_key, r.body) for r in rows))
            await asyncio.to_thread(self.store.remove, [r.seq for r, ok in zip(rows, sent) if ok])
            await asyncio.to_thread(self.store.release, [r.seq for r, ok in zip(rows, sent) if not ok])
            for row, ok in zip(rows, sent):
                if ok:
                    self.metrics.relayed.labels(type=row.routing_key).inc()
            if not all(sent):
                break  # the broker went away again: wait for the next wake-up
        count, oldest_s = await asyncio.to_thread(self.store.backlog)
        self.metrics.backlog.set(count)
        self.metrics.oldest.set(oldest_s)

    async def close(self) -> None:
        if self._relay is not None:
            self._relay.cancel()
            await asyncio.gather(self._relay, return_exceptions=True)
        await self.link.close()

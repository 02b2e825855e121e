"""The broker's topology: exchanges, queues, their arguments and bindings. Every publisher and
consumer declares it on connect (declaring is idempotent), so it exists whichever starts first.

RabbitMQ refuses to redeclare a queue with other arguments (PRECONDITION_FAILED): every argument is
set here and nowhere else; changing one means deleting the queue first (or a policy).

- `ragyard.events`, a topic exchange: publishers send each event with its type as routing key.
- One durable quorum queue per consumer, bound to the types it consumes. A delivery that is never
  acknowledged (a consumer crashing on it, again and again) is dead-lettered by the broker once it
  has come back DELIVERY_LIMIT times; dead-lettering is at-least-once (nothing lost on the way).
- Per queue, one retry queue per delay: a consumer whose handler failed sends a copy there and acks;
  when its TTL expires the broker puts it back on its own queue only (through the default exchange,
  so that the other queues bound to the type do not get it twice).
- `ragyard.dead`, a topic exchange, and `ragyard.dead-letters`, the queue that keeps what could not
  be processed: malformed events, retries used up, the delivery limit; the reason in a header.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractChannel

DELIVERY_LIMIT = 5
# Delays before the first, second and third retry of a failed handler; then it is dead-lettered.
RETRY_DELAYS_S = (1.0, 10.0, 60.0)
# Headers a consumer sets on what it dead-letters or retries.
DEAD_REASON_HEADER = "x-ragyard-dead-reason"
DEAD_QUEUE_HEADER = "x-ragyard-queue"
ATTEMPT_HEADER = "x-ragyard-attempt"


@dataclass(frozen=True)
class QueueSpec:
    """A consumer's queue and the event types bound to it."""

    name: str  # without the topology's prefix
    event_types: tuple[str, ...]


FEEDBACK = QueueSpec("router.feedback", ("feedback.scored",))
# The review queue's consumer is a later part: until then this durable queue holds the flags.
FLAGS = QueueSpec("review.flags", ("answer.flagged",))
DOCUMENTS = QueueSpec("ingest.documents", ("document.changed",))
JOBS = QueueSpec("jobs.updates", ("job.updated",))


@dataclass(frozen=True)
class Topology:
    """Names and arguments of everything on the broker. `prefix` namespaces them (tests use their own
    on a shared broker); the platform uses TOPOLOGY."""

    prefix: str = "ragyard"
    retry_delays_s: tuple[float, ...] = RETRY_DELAYS_S
    delivery_limit: int = DELIVERY_LIMIT
    queues: tuple[QueueSpec, ...] = field(default=(FEEDBACK, FLAGS, DOCUMENTS, JOBS))

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dead-letters"

    def queue(self, spec: QueueSpec) -> str:
        return f"{self.prefix}.{spec.name}"

    def retry_queue(self, spec: QueueSpec, attempt: int) -> str:
        """Where the `attempt`-th retry (1-based) waits."""
        return f"{self.queue(spec)}.retry.{self.retry_delays_s[attempt - 1]:g}s"

    def queue_arguments(self) -> dict:
        return {"x-queue-type": "quorum", "x-dead-letter-exchange": self.dead_exchange,
                "x-delivery-limit": self.delivery_limit,
                # At-least-once dead-lettering needs reject-publish: a full queue refuses, never drops.
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

    def retry_arguments(self, spec: QueueSpec, delay_s: float) -> dict:
        return {"x-queue-type": "quorum", "x-message-ttl": int(delay_s * 1000),
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue(spec),
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

    async def declare(self, channel: AbstractChannel) -> aio_pika.abc.AbstractExchange:
        """Declare everything; returns the events exchange."""
        events = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        dead = await channel.declare_exchange(self.dead_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        dead_letters = await channel.declare_queue(self.dead_letters, durable=True,
                                                   arguments={"x-queue-type": "quorum"})
        await dead_letters.bind(dead, "#")
        for spec in self.queues:
            queue = await channel.declare_queue(self.queue(spec), durable=True, arguments=self.queue_arguments())
            for event_type in spec.event_types:
                await queue.bind(events, event_type)
            for attempt, delay_s in enumerate(self.retry_delays_s, start=1):
                await channel.declare_queue(self.retry_queue(spec, attempt), durable=True,
                                            arguments=self.retry_arguments(spec, delay_s))
        return events


TOPOLOGY = Topology()

"""Events on a real broker: the publisher, its outbox and relay, idempotent consumers, retries with
backoff, the dead-letter queue. The broker is stopped (SIGTERM) and crashed (SIGKILL) mid-traffic, and
every event must arrive exactly once. Each test has its own topology (a prefix) on the module's broker."""

import asyncio
import uuid
from collections import Counter

import aio_pika
import prometheus_client
import pytest

from ragyard.events.consumer import Consumer, Unprocessable
from ragyard.events.publisher import Publisher
from ragyard.events.schema import DocumentChanged, FeedbackScored, encode
from ragyard.events.store import EventStore
from ragyard.events.topology import (
    DEAD_QUEUE_HEADER,
    DEAD_REASON_HEADER,
    FEEDBACK,
    Topology,
)
from tests.broker_support import depth, drain, running_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: its tests stop it."""
    with running_broker(tmp_path_factory.mktemp("broker")) as local:
        yield local


@pytest.fixture
def topology() -> Topology:
    return Topology(prefix=f"t{uuid.uuid4().hex[:8]}", retry_delays_s=(0.2, 0.4))


def feedback(n: int) -> FeedbackScored:
    return FeedbackScored(producer="test", trace_id=uuid.uuid4().hex, name="thumbs", value=float(n))


def sample(name: str, **labels) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


class Sink:
    """A consumer's handler that counts every call per event id, failing as told."""

    def __init__(self, fail_times: dict[str, int] | None = None, unprocessable: set[str] = frozenset()):
        self.calls: Counter[str] = Counter()
        self.fail_times = fail_times or {}
        self.unprocessable = unprocessable

    async def __call__(self, event) -> None:
        self.calls[event.id] += 1
        if event.id in self.unprocessable:
            raise Unprocessable(f"no such thing: {event.id}")
        if self.calls[event.id] <= self.fail_times.get(event.id, 0):
            raise RuntimeError(f"transient failure {self.calls[event.id]}")


async def connected(broker, topology: Topology, sink: Sink, folder):
    """A store, a publisher and a consumer of the feedback queue (into `sink`), connected."""
    store = EventStore(folder / "events.sqlite3")
    publisher = Publisher(broker.config, store, "test-publisher", topology)
    consumer = Consumer(broker.config, store, FEEDBACK, sink, "test-consumer", topology)
    publisher.start()
    consumer.start()
    await publisher.link.connected.wait()
    await consumer.link.connected.wait()
    return store, publisher, consumer


async def wait_for(condition, timeout_s: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def raw_publish(url: str, exchange: str, routing_key: str, body: bytes, message_id: str | None = None) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(body, message_id=message_id), routing_key)


def test_each_event_is_processed_once_and_malformed_ones_are_dead_lettered_with_the_reason(broker, topology, tmp_path):
    url = broker.config.amqp_url
    sink = Sink()

    async def scenario():
        _, publisher, consumer = await connected(broker, topology, sink, tmp_path)
        events = [feedback(n) for n in range(20)]
        assert [await publisher.publish(e) for e in events] == ["broker"] * 20
        # The same event again (a client retrying, a publish that timed out and went to the outbox too).
        await raw_publish(url, topology.exchange, "feedback.scored", encode(events[0]), events[0].id)
        await raw_publish(url, topology.exchange, "feedback.scored", b"{not json", "bad-1")
        await raw_publish(url, topology.exchange, "feedback.scored",
                          encode(DocumentChanged(producer="test", source="docs", path="a.md")), "bad-2")
        await raw_publish(url, topology.exchange, "feedback.scored",
                          encode(events[1]).replace(b'"value":1.0', b'"value":"high"'), "bad-3")
        await wait_for(lambda: len(sink.calls) == 20 and sample(
            "ragyard_events_consumed_total", queue=topology.queue(FEEDBACK), outcome="dead") >= 3)
        await wait_for(lambda: sample("ragyard_events_consumed_total", queue=topology.queue(FEEDBACK),
                                      outcome="duplicate") >= 1)
        await consumer.close()
        await publisher.close()
        return events, await drain(url, topology.dead_letters)

    events, dead = asyncio.run(scenario())
    assert sink.calls == Counter({e.id: 1 for e in events})
    reasons = {m.message_id: m.headers[DEAD_REASON_HEADER] for m in dead}
    assert set(reasons) == {"bad-1", "bad-2", "bad-3"}
    assert reasons["bad-1"].startswith("malformed: body: Invalid JSON")
    assert "does not belong on" in reasons["bad-2"]
    assert "value" in reasons["bad-3"] and "number" in reasons["bad-3"]
    assert {m.headers[DEAD_QUEUE_HEADER] for m in dead} == {topology.queue(FEEDBACK)}


def test_a_failing_handler_is_retried_with_backoff_and_then_dead_lettered(broker, topology, tmp_path):
    flaky, broken, refused = feedback(1), feedback(2), feedback(3)
    sink = Sink(fail_times={flaky.id: 2, broken.id: 99}, unprocessable={refused.id})

    async def scenario():
        store, publisher, consumer = await connected(broker, topology, sink, tmp_path)
        for event in (flaky, broken, refused):
            assert await publisher.publish(event) == "broker"
        # The broken one: the first try and one per retry delay, then dead-lettered.
        await wait_for(lambda: sink.calls[broken.id] == 3 and sink.calls[flaky.id] == 3)
        await wait_for(lambda: store.processed(topology.queue(FEEDBACK), flaky.id))
        dead = []
        while len(dead) < 2:
            dead += await drain(url=broker.config.amqp_url, queue=topology.dead_letters)
        await consumer.close()
        await publisher.close()
        return dead

    dead = asyncio.run(scenario())
    reasons = {m.message_id: m.headers[DEAD_REASON_HEADER] for m in dead}
    assert reasons == {broken.id: "failed 3 times, last: RuntimeError: transient failure 3",
                       refused.id: f"unprocessable: no such thing: {refused.id}"}
    assert sink.calls[refused.id] == 1 and sink.calls[flaky.id] == 3


def test_a_poison_message_is_dead_lettered_by_the_broker_after_the_delivery_limit(broker, topology):
    """A consumer that crashes on a message never acks it: the broker redelivers it, up to the limit."""
    url = broker.config.amqp_url
    poison = feedback(0)

    async def scenario():
        connection = await aio_pika.connect(url)
        async with connection:
            await topology.declare(await connection.channel())
        await raw_publish(url, topology.exchange, "feedback.scored", encode(poison), poison.id)
        deliveries = 0
        while True:
            crashing = await aio_pika.connect(url)  # a consumer that takes the message and dies
            channel = await crashing.channel()
            queue = await channel.get_queue(topology.queue(FEEDBACK))
            message = await queue.get(fail=False, timeout=5)
            await crashing.close()
            if message is None:
                break
            deliveries += 1
        dead = []
        while not dead:  # dead-lettered as the last delivery is returned
            dead = await drain(url, topology.dead_letters)
        return deliveries, dead

    deliveries, dead = asyncio.run(scenario())
    assert deliveries == topology.delivery_limit + 1
    [message] = dead
    assert message.message_id == poison.id and message.headers["x-first-death-reason"] == "delivery_limit"


def test_a_publish_blocked_by_a_memory_alarm_goes_to_the_outbox_and_is_processed_once(broker, topology, tmp_path):
    """A blocked broker does not confirm: the event goes to the outbox after the publish timeout, and
    the blocked publish itself is delivered once the alarm clears. The consumer sees it twice and
    processes it once."""
    sink = Sink()

    async def scenario():
        store, publisher, consumer = await connected(broker, topology, sink, tmp_path)
        await asyncio.to_thread(broker.ctl, "set_vm_memory_high_watermark", "absolute", "1000000")
        try:
            event = feedback(1)
            assert await publisher.publish(event) == "outbox"
        finally:
            await asyncio.to_thread(broker.ctl, "set_vm_memory_high_watermark", "0.4")
        await wait_for(lambda: store.backlog()[0] == 0 and sample(
            "ragyard_events_consumed_total", queue=topology.queue(FEEDBACK), outcome="duplicate") >= 1)
        await consumer.close()
        await publisher.close()
        return event

    event = asyncio.run(scenario())
    assert sink.calls == Counter({event.id: 1})


@pytest.mark.parametrize("outage", ["SIGTERM", "SIGKILL"])
def test_the_broker_stopped_mid_traffic_loses_nothing_and_duplicates_nothing(broker, topology, tmp_path, outage):
    """4 concurrent publishers send N events at a steady pace; at N/3 the broker goes down (stopped, or
    crashed), and comes back later. Every event is accepted (broker or outbox), the outbox drains,
    the consumer processes every event exactly once, nothing is dead-lettered. The events relayed after
    the restart reach the consumer only if it came back by itself (aio-pika restores only the channels
    something still references)."""
    n = 300
    sink = Sink()
    accepted: dict[str, str] = {}
    seen = {}

    async def scenario():
        store, publisher, consumer = await connected(broker, topology, sink, tmp_path)

        async def client(k: int) -> None:
            for i in range(k, n, 4):
                event = feedback(i)
                accepted[event.id] = await publisher.publish(event)
                await asyncio.sleep(0.02)

        async def outage_and_recovery() -> None:
            await wait_for(lambda: len(accepted) >= n // 3)
            await asyncio.to_thread(broker.stop if outage == "SIGTERM" else broker.kill)
            await wait_for(lambda: sample("ragyard_outbox_backlog") > 0)
            seen["backlog"] = store.backlog()[0]
            await asyncio.sleep(2)  # traffic goes on into the outbox
            await asyncio.to_thread(broker.start)

        await asyncio.gather(*(client(k) for k in range(4)), outage_and_recovery())
        await wait_for(lambda: len(sink.calls) >= n and store.backlog()[0] == 0, timeout_s=120)
        await wait_for(lambda: sample("ragyard_outbox_backlog") == 0)
        await asyncio.sleep(1)  # would a late duplicate be processed again?
        seen["dead"] = await depth(broker.config.amqp_url, topology.dead_letters)
        await consumer.close()
        await publisher.close()

    asyncio.run(scenario())
    assert len(accepted) == n
    assert "outbox" in accepted.values() and "broker" in accepted.values()
    assert seen["backlog"] > 0
    assert sink.calls == Counter({event_id: 1 for event_id in accepted})
    assert seen["dead"] == 0
    assert sample("ragyard_events_dropped_total", type="feedback.scored") == 0

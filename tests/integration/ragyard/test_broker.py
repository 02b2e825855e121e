"""The broker as `ragyard run` starts it: Debian's rabbitmq-server under RAGYARD_HOME/rabbitmq, its own
ports, every listener on 127.0.0.1, management and Prometheus plugins, and nothing left behind
(epmd!) after a stop or a crash."""

import asyncio
import time

import aio_pika
import httpx
import psutil
import pytest

from ragyard.events.topology import Topology
from tests.support.broker import LocalBroker, depth
from tests.support.dashboards import dashboard_files, exposed_names, queries


@pytest.fixture
def broker(tmp_path):
    local = LocalBroker(tmp_path / "home")
    try:
        yield local
    finally:
        local.close()
        assert local.processes() == [], "the broker left processes behind"


def listening_ports(processes: list[psutil.Process]) -> dict[int, str]:
    ports = {}
    for process in processes:
        for conn in process.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                ports[conn.laddr.port] = conn.laddr.ip
    return ports


def test_the_broker_starts_on_its_own_ports_on_loopback_and_stops_leaving_nothing(broker):
    config = broker.config
    broker.start()
    assert (broker.settings.broker_dir / "mnesia").is_dir()  # its data under RAGYARD_HOME/rabbitmq
    ports = listening_ports(broker.processes())
    wanted = {config.port, config.management_port, config.prometheus_port, config.dist_port, config.epmd_port}
    assert wanted <= set(ports), ports
    assert {ip for ip in ports.values()} <= {"127.0.0.1", "::1"}, ports

    async def amqp_round_trip() -> bytes:
        connection = await aio_pika.connect(config.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True)
            await channel.default_exchange.publish(aio_pika.Message(b"hello"), queue.name)
            message = await queue.get(timeout=5)
            return message.body

    assert asyncio.run(amqp_round_trip()) == b"hello"
    auth = (config.user, config.password)
    health = httpx.get(
        f"http://127.0.0.1:{config.management_port}/api/health/checks/port-listener/{config.port}",
        auth=auth,
        timeout=10,
    )
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.get(f"http://127.0.0.1:{config.management_port}/api/overview", timeout=10).status_code == 401
    # Every RabbitMQ series the Grafana dashboards read is one this broker exposes.
    metrics = httpx.get(f"http://127.0.0.1:{config.prometheus_port}/metrics", timeout=10).text
    exposed = exposed_names(metrics)
    read = {
        name for path in dashboard_files() for q in queries(path) for name in q.series() if name.startswith("rabbitmq_")
    }
    assert read and read <= exposed, read - exposed

    broker.stop()
    assert broker.processes() == []


def test_a_confirmed_event_survives_a_crash_of_the_broker(broker):
    topology = Topology(prefix="crash")
    broker.start()

    async def publish() -> None:
        connection = await aio_pika.connect(broker.config.amqp_url)
        async with connection:
            channel = await connection.channel()  # publisher confirms: publish returns once confirmed
            exchange = await topology.declare(channel)
            await exchange.publish(
                aio_pika.Message(b"{}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "feedback.scored"
            )

    asyncio.run(publish())
    broker.kill()
    assert broker.processes() == []
    broker.start()  # the same data folder
    # A quorum queue counts its messages once it has recovered its log, shortly after the port opens.
    deadline = time.monotonic() + 60
    while (
        found := asyncio.run(depth(broker.config.amqp_url, "crash.router.feedback"))
    ) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == 1

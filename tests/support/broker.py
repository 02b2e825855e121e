"""A real RabbitMQ for tests: Debian's rabbitmq-server started on a `Stack` from the same spec `ragyard run`
uses, under a test folder, on free ports; and the few AMQP calls tests make to look at its queues."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import aio_pika.abc
import psutil

from ragyard.services import broker_env, broker_spec
from ragyard.settings import BrokerSettings, Settings
from tests.support.network import free_port
from tests.support.stack import Stack


class LocalBroker:
    """One broker service on a stack of its own, which a test may stop, crash and start again."""

    def __init__(self, home: Path) -> None:
        self.settings = Settings(
            home=home,
            broker=BrokerSettings(
                port=free_port(),
                management_port=free_port(),
                prometheus_port=free_port(),
                dist_port=free_port(),
                epmd_port=free_port(),
                reconnect_interval_s=0.5,
            ),
        )
        self.stack = Stack(home)

    @property
    def config(self) -> BrokerSettings:
        return self.settings.broker

    def start(self) -> None:
        self.stack.start(broker_spec(self.settings))

    def stop(self) -> None:
        """SIGTERM to the broker's process group, as `ragyard run` stops it."""
        self.stack.stop("broker")

    def kill(self) -> None:
        """SIGKILL to the broker and all its processes: a crash."""
        self.stack.kill("broker")

    def close(self) -> None:
        self.stack.supervisor.stop_all()

    def ctl(self, *args: str) -> str:
        """`rabbitmqctl ARGS` against this instance."""
        done = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **broker_env(self.settings)},
            timeout=120,
            check=True,
        )
        return done.stdout

    def processes(self) -> list[psutil.Process]:
        """Processes of this instance still running: beam.smp, epmd, erl_child_setup, the start script."""
        marks = (str(self.settings.broker_dir), f"-port {self.config.epmd_port}", str(self.config.epmd_port))
        found = []
        for process in psutil.process_iter(["cmdline", "environ", "status"]):
            try:
                if process.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                text = " ".join(process.info["cmdline"] or [])
                env = process.info["environ"] or {}
                if any(m in text for m in marks) or env.get("ERL_EPMD_PORT") == str(self.config.epmd_port):
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found


@contextlib.contextmanager
def running_broker(home: Path) -> Iterator[LocalBroker]:
    """A started LocalBroker; stopped on exit, and checked to leave no process behind."""
    local = LocalBroker(home)
    try:
        local.start()
        yield local
    finally:
        local.close()
    assert local.processes() == [], "the broker left processes behind"


async def drain(url: str, queue: str, timeout_s: float = 1.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in `queue` now, acked."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue)
        messages = []
        while (message := await q.get(fail=False, timeout=timeout_s)) is not None:
            await message.ack()
            messages.append(message)
        return messages
    finally:
        await connection.close()


async def depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count
    finally:
        await connection.close()


async def raw_publish(url: str, exchange: str, routing_key: str, body: bytes, message_id: str | None = None) -> None:
    """A message as any AMQP client could send it, bypassing the publisher (and its checks)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(body, message_id=message_id), routing_key)

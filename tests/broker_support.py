"""A real RabbitMQ for tests: Debian's rabbitmq-server started by the project's supervisor from the
same spec `ragyard run` uses, under a test folder, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import aio_pika
import psutil

from ragyard.services import broker_env, broker_spec
from ragyard.settings import BrokerSettings, Settings
from ragyard.supervisor import Supervisor
from tests.conftest import free_port


class LocalBroker:
    def __init__(self, home: Path):
        self.settings = Settings(home=home, broker=BrokerSettings(
            port=free_port(), management_port=free_port(), prometheus_port=free_port(), dist_port=free_port(),
            epmd_port=free_port(), reconnect_interval_s=0.5))
        self.supervisor = Supervisor(self.settings.logs_dir)

    @property
    def config(self) -> BrokerSettings:
        return self.settings.broker

    def start(self) -> None:
        self.supervisor.start_all([broker_spec(self.settings)])

    def stop(self) -> None:
        """SIGTERM to the broker's process group, as `ragyard run` stops it."""
        self.supervisor.stop("broker")

    def kill(self) -> None:
        """SIGKILL to the broker's process group: a crash."""
        os.killpg(self.supervisor.pids()["broker"], signal.SIGKILL)
        self.supervisor.stop("broker")  # reaps what is left and forgets it

    def close(self) -> None:
        self.supervisor.stop_all()

    def ctl(self, *args: str) -> str:
        """`rabbitmqctl ARGS` against this instance."""
        done = subprocess.run(["/usr/lib/rabbitmq/bin/rabbitmqctl", *args], capture_output=True, text=True,
                              env={**os.environ, **broker_env(self.settings)}, timeout=120, check=True)
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
def running_broker(home: Path):
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
        return declared.declaration_result.message_count
    finally:
        await connection.close()



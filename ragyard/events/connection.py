"""A connection to the broker made in the background: start-up never waits for the broker, and a
broker that is down now is connected to when it comes up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

from ragyard.events.topology import Topology
from ragyard.settings import BrokerSettings

logger = logging.getLogger("ragyard.events")
REPEAT_LOG_AFTER_S = 60.0


class _NotTooOften(logging.Filter):
    """Lets a log message through once per REPEAT_LOG_AFTER_S: while the broker is down, aio-pika and
    aiormq log a failed reconnect (at ERROR) on every attempt, once a second."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.name, record.msg), time.monotonic()
        if now - self.last.get(key, -REPEAT_LOG_AFTER_S) < REPEAT_LOG_AFTER_S:
            return False
        self.last[key] = now
        return True


for _noisy in ("aiormq.connection", "aio_pika.robust_connection"):
    logging.getLogger(_noisy).addFilter(_NotTooOften())


class BrokerLink:
    """One robust connection and one channel (publisher confirms on), with the topology declared.

    aio-pika's robust connection reconnects and reopens its channels, consumers and declarations by
    itself, but it holds channels weakly: a channel nothing else references is not restored after a
    reconnect, and its consumer is silently gone. So this keeps strong references to both.
    """

    def __init__(self, settings: BrokerSettings, topology: Topology, name: str,
                 on_ready: Callable[[AbstractRobustChannel], Awaitable[None]] | None = None):
        self.settings, self.topology, self.name = settings, topology, name
        self.on_ready = on_ready
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractRobustChannel | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None
        self.connected = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect(), name=f"broker-connect-{self.name}")

    @property
    def ready(self) -> bool:
        """Connected and the channel open (not while the robust connection reconnects)."""
        return self.channel is not None and not self.channel.is_closed

    async def _connect(self) -> None:
        interval = self.settings.reconnect_interval_s
        warned = False
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self.settings.amqp_url, reconnect_interval=interval, timeout=self.settings.publish_timeout_s,
                    client_properties={"connection_name": self.name})
            except CONNECTION_EXCEPTIONS as exc:
                if not warned:
                    logger.warning("%s: broker unreachable (%r); retrying every %g s", self.name, exc, interval)
                    warned = True
                await asyncio.sleep(interval)
                continue
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self.exchange = await self.topology.declare(channel)
                if self.on_ready is not None:
                    await self.on_ready(channel)
            except CONNECTION_EXCEPTIONS as exc:  # the broker went away again mid-way: start over
                logger.warning("%s: setting up the channel failed (%r); retrying", self.name, exc)
                await connection.close()
                await asyncio.sleep(interval)
                continue
            self.connection, self.channel = connection, channel
            logger.info("%s: connected to the broker", self.name)
            self.connected.set()
            return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()

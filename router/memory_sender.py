"""Answered exchanges to the memory bento, off the request path: a bounded queue in the serving event
loop and one task that sends them in the order they came (a user's "I moved to Berlin" after their "I live
in Paris"). A full queue drops the exchange, and a send that fails is given up: both are counted
(`ragyard_router_memory_exchanges`) and logged. The memory bento retries the extraction itself once it
has accepted an exchange; what is lost here costs a memory, never an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from ragyard.clients.memory import MemoryClient
from ragyard.contracts.memory import ExchangeMessage
from ragyard.kit.errors import Rejected, Unavailable
from router import metrics

logger = logging.getLogger("ragyard.router.memory")


@dataclass(frozen=True)
class Exchange:
    scope: str
    user: str
    question: str  # as the router keeps it: with the input's pseudonyms
    answer: str
    at: float = field(default_factory=time.time)


class ExchangeSender:
    def __init__(self, client: MemoryClient, size: int):
        self.client = client
        self.queue: asyncio.Queue[Exchange] = asyncio.Queue(size)
        self.task: asyncio.Task | None = None

    def submit(self, exchange: Exchange) -> bool:
        """Queue the exchange; False (and counted) when the queue is full. Starts the sending task in the
        caller's event loop on first use."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run(), name="memory-exchanges")
        try:
            self.queue.put_nowait(exchange)
        except asyncio.QueueFull:
            metrics.MEMORY_EXCHANGES.labels(outcome="dropped").inc()
            logger.warning("memory exchange queue full (%d): an exchange was dropped", self.queue.maxsize)
            return False
        return True

    async def run(self) -> None:
        while True:
            exchange = await self.queue.get()
            try:
                await self.send(exchange)
            finally:
                self.queue.task_done()

    async def send(self, exchange: Exchange) -> None:
        messages = [
            ExchangeMessage(role="user", content=exchange.question),
            ExchangeMessage(role="assistant", content=exchange.answer),
        ]
        try:
            await self.client.add_exchange(exchange.scope, exchange.user, messages, at=exchange.at)
        except (Unavailable, Rejected) as exc:
            metrics.MEMORY_EXCHANGES.labels(outcome="failed").inc()
            logger.warning("an exchange could not be sent to the memory bento: %s", exc)
        else:
            metrics.MEMORY_EXCHANGES.labels(outcome="sent").inc()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

"""A bounded queue in front of each model: a few generations run, a few more wait, the rest get a 429."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bentos.llm.errors import QueueFull


class Admission:
    """At most `running` generations at once and `waiting` more queued; beyond that, `QueueFull`.

    A full queue is refused at once instead of piling up callers: every waiter holds a request,
    a connection and memory, and a client told to retry can go to another replica or model.
    """

    def __init__(self, model: str, running: int, waiting: int, retry_after_s: int):
        self.model = model
        self.running = running
        self.waiting = waiting
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(running)
        self.admitted = 0  # running plus waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.admitted >= self.running + self.waiting:
            raise QueueFull(self.model, self.waiting, self.retry_after_s)
        self.admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self.admitted -= 1

"""Circuit breakers per backend, and deadlines. (Retries: the clients' one policy,
`ragyard.clients.base.retry_policy`.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class DeadlineExceeded(RuntimeError):
    """The request's overall deadline passed."""


class CircuitBreaker:
    """Closed → open after `failures` consecutive failures; after `reset_s` one trial call is let
    through (half-open): success closes it, failure opens it again."""

    def __init__(self, name: str, failures: int, reset_s: float):
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_started_at: float | None = None  # a trial that never reported back expires after reset_s

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        now = time.monotonic()
        if state == "half-open" and (self.trial_started_at is None or now - self.trial_started_at >= self.reset_s):
            self.trial_started_at = now
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial_started_at = None

    def failure(self) -> None:
        self.failures += 1
        self.trial_started_at = None
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()


class Breakers:
    def __init__(self, failures: int, reset_s: float):
        self.failures = failures
        self.reset_s = reset_s
        self.by_name: dict[str, CircuitBreaker] = {}

    def __getitem__(self, name: str) -> CircuitBreaker:
        if name not in self.by_name:
            self.by_name[name] = CircuitBreaker(name, self.failures, self.reset_s)
        return self.by_name[name]


class Deadline:
    """The time left for a request; every step's timeout is capped by it."""

    def __init__(self, seconds: float):
        self.ends_at = time.monotonic() + seconds

    def left(self) -> float:
        return self.ends_at - time.monotonic()

    def cap(self, step_timeout_s: float) -> float:
        left = self.left()
        if left <= 0:
            raise DeadlineExceeded("the request's deadline passed")
        return min(step_timeout_s, left)

    async def run(self, awaitable: Awaitable[T], step_timeout_s: float, step: str) -> T:
        try:
            return await asyncio.wait_for(awaitable, self.cap(step_timeout_s))
        except TimeoutError as exc:
            if self.left() <= 0:
                raise DeadlineExceeded(f"the request's deadline passed during {step}") from exc
            raise

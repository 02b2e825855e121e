"""Circuit breakers per backend, jittered retries, and deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import httpx2
import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ragyard.clients.base import ServiceUnavailable

T = TypeVar("T")


class BackendUnavailable(ServiceUnavailable):
    """A backend failed (or its breaker is open); the flow falls back or answers 503."""


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


# The `openai` client runs on httpx2 (its own fork of httpx), our other clients on httpx; an error
# raised while a stream is read comes unwrapped from either.
TRANSPORT_ERRORS = (httpx.TransportError, httpx2.TransportError)
HTTP_ERRORS = (httpx.HTTPError, httpx2.HTTPError)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: connection trouble, timeouts, 5xx and 429 from an upstream."""
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, *TRANSPORT_ERRORS, asyncio.TimeoutError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code == 429
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500 or exc.response.status_code == 429
    return False


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int, max_wait_s: float = 2.0) -> T:
    """`call()` up to `attempts` times on transient errors, waiting a random exponential backoff."""
    async for attempt in AsyncRetrying(retry=retry_if_exception(is_transient), stop=stop_after_attempt(attempts),
                                       wait=wait_random_exponential(multiplier=0.1, max=max_wait_s), reraise=True):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


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
        except asyncio.TimeoutError as exc:
            if self.left() <= 0:
                raise DeadlineExceeded(f"the request's deadline passed during {step}") from exc
            raise

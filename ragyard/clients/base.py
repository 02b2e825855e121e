"""The base of every bento client: JSON over httpx, one timeout per call, one retry policy, and the
service's answer as one of the kit's two errors (`ragyard.kit.errors`):

- `Unavailable`: no usable answer. The connection failed or was lost before an answer, the
  service failed (5xx) or was overloaded (429): retried with a jittered exponential backoff, up
  to the client's attempts. A timeout is Unavailable too, and not retried: the caller's time for
  the call is spent.
- `Rejected`: the service refused the request (4xx), the caller's fault: never retried; it carries
  the status and the service's error (message, param, code).

Every call a client makes is idempotent (a search, a check, an embedding), so a retry is safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ragyard.kit.errors import Rejected, Unavailable, error_from_answer


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Unavailable) and exc.retryable


def retry_policy(attempts: int, max_wait_s: float = 2.0) -> dict[str, Any]:
    """tenacity's arguments (`Retrying`, `AsyncRetrying`): up to `attempts` calls while the callee
    is retryably `Unavailable`, a jittered exponential backoff between them; the last error raised
    as it is."""
    return {
        "retry": retry_if_exception(_retryable),
        "stop": stop_after_attempt(attempts),
        "wait": wait_random_exponential(multiplier=0.1, max=max_wait_s),
        "reraise": True,
    }


class ServiceClient:
    """A service's HTTP API at `url`: `request` from threads, `arequest` from an event loop.

    `pool`: the caller's async connection pool, which `arequest` runs on and the caller closes;
    without one the client opens its own (closed by `aclose`)."""

    def __init__(
        self,
        service: str,
        url: str,
        *,
        timeout_s: float = 30.0,
        attempts: int = 3,
        pool: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        self.service = service
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.headers = dict(headers or {})
        self._pool = pool
        self._own_pool: httpx.AsyncClient | None = None
        self._sync: httpx.Client | None = None
        self._sync_lock = threading.Lock()

    def request(self, method: str, path: str, *, json: Any = None, timeout_s: float | None = None) -> httpx.Response:
        timeout_s = timeout_s or self.timeout_s
        for attempt in Retrying(**retry_policy(self.attempts)):
            with attempt:
                try:
                    response = self._sync_client().request(
                        method, f"{self.url}{path}", json=json, headers=self.headers, timeout=timeout_s
                    )
                except httpx.TransportError as exc:
                    raise self.unreachable(exc, timeout_s) from exc
                return self.answered(response)
        raise AssertionError("tenacity returns or raises")

    async def arequest(
        self, method: str, path: str, *, json: Any = None, timeout_s: float | None = None
    ) -> httpx.Response:
        timeout_s = timeout_s or self.timeout_s
        async for attempt in AsyncRetrying(**retry_policy(self.attempts)):
            with attempt:
                try:
                    response = await self._async_pool().request(
                        method, f"{self.url}{path}", json=json, headers=self.headers, timeout=timeout_s
                    )
                except httpx.TransportError as exc:
                    raise self.unreachable(exc, timeout_s) from exc
                return self.answered(response)
        raise AssertionError("tenacity returns or raises")

    def unreachable(self, exc: httpx.TransportError, timeout_s: float) -> Unavailable:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return Unavailable(f"{self.service} at {self.url} did not answer within {timeout_s:g} s", retryable=False)
        return Unavailable(f"{self.service} at {self.url} unreachable: {exc!r}")

    def answered(self, response: httpx.Response) -> httpx.Response:
        """The response when it succeeded; else what it says, as Unavailable or Rejected."""
        if response.is_success:
            return response
        error = error_from_answer(response.status_code, response.content, response.headers.get("retry-after"))
        if response.status_code == 429 or response.status_code >= 500:
            raise Unavailable(
                f"{self.service} at {self.url} answered {response.status_code}: {error.message}",
                retry_after_s=error.retry_after_s,
            )
        raise Rejected(self.service, error)

    def _sync_client(self) -> httpx.Client:
        with self._sync_lock:
            if self._sync is None:
                self._sync = httpx.Client()
            return self._sync

    def _async_pool(self) -> httpx.AsyncClient:
        if self._pool is not None:
            return self._pool
        if self._own_pool is None:
            self._own_pool = httpx.AsyncClient()
        return self._own_pool

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        self.close()
        if self._own_pool is not None:
            await self._own_pool.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

"""What the bento clients share: the error a caller gets when a service cannot answer, and the
retry of calls that never reached it (or lost their connection before an answer)."""

from __future__ import annotations

import httpx
from tenacity import retry_if_exception_type, stop_after_attempt, wait_exponential


class ServiceUnavailable(RuntimeError):
    """A service could not be reached, failed (5xx) or answered nothing usable: callers fail closed,
    fall back, or answer 503."""


CONNECTION_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


def connection_retry(attempts: int) -> dict:
    """tenacity's arguments (for `retry` or `AsyncRetrying`): up to `attempts` calls while the
    connection fails, with an exponential backoff; the last error is raised as it is."""
    return {"retry": retry_if_exception_type(CONNECTION_ERRORS), "stop": stop_after_attempt(attempts),
            "wait": wait_exponential(multiplier=0.2, max=2.0), "reraise": True}

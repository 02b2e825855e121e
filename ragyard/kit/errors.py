"""The one error type of every service, and its body on the wire: OpenAI's error shape.

A service raises a `ServiceError` (or answers one, see `ragyard.kit.serving`); every bento answers
it as ``{"error": {"message", "type", "param", "code"}}``, the body OpenAI's clients parse into
typed exceptions, with a ``Retry-After`` header when waiting helps. A client of a service gets what
the service answered back as one of two errors: `Unavailable` (it could not answer: retryable) or
`Rejected` (it refused the request: the caller's fault).

The status policy (docs/architecture.md, "Errors"): 400 a request that breaks the schema or a rule,
the message starting with the field and `param` naming it; 401/403 credentials; 404 no such route,
model or object; 413 over a configured size bound; 415 a body that is not JSON; 429 a limit, with
Retry-After when waiting helps; 500 only for a bug, never for bad input; 502 an upstream answered
wrong; 503 a dependency cannot answer now; 504 the request's deadline passed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

# OpenAI's error types: any other 4xx is an invalid request, any 5xx a server error.
TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
# The code when the raiser gives none: what kind of failure, for clients to branch on.
CODES = {
    400: "invalid_value",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "backend_error",
    503: "unavailable",
    504: "timeout",
}


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


class ServiceError(Exception):
    """A request a service refuses or cannot serve: the HTTP status, a message that starts with the
    field it is about (``param``), OpenAI's error ``type`` and ``code``, and how long to wait before
    a retry can succeed (None: waiting will not help)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type_: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code or CODES.get(status) or ("server_error" if status >= 500 else "invalid_request")
        self.type = type_ or TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        self.retry_after_s = retry_after_s

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.retry_after_s is not None:
            headers["Retry-After"] = retry_after_header(self.retry_after_s)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


class Unavailable(ServiceError):
    """A service could not answer: unreachable, failed (5xx), overloaded (429) or too slow. Callers
    fail closed, fall back, or let it through, which answers 503. ``retryable``: the request may not
    have been served, so another try can succeed; not after a timeout, which spent the caller's time."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after_s: float | None = None,
        code: str = "backend_unavailable",
    ):
        super().__init__(503, message, code=code, retry_after_s=retry_after_s)
        self.retryable = retryable


class Rejected(Exception):
    """A service refused a request (4xx): the caller's fault, which another try does not mend.
    ``error`` is what the service answered (status, message, param, code)."""

    def __init__(self, service: str, error: ServiceError):
        super().__init__(f"{service} refused the request ({error.status}): {error.message}")
        self.service = service
        self.error = error


def invalid_request(errors: Sequence[Mapping[str, Any]]) -> ServiceError:
    """A 400 for pydantic's validation errors (locations relative to the body), naming the field.

    Of several errors the deepest says most (of a union's alternatives, ``content.0.type`` rather
    than "not a string"); the message keeps its whole path, ``param`` is the top-level field."""
    first = max(errors, key=lambda error: len(error.get("loc", ())), default={})
    loc = [str(part) for part in first.get("loc", ())]
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "json_invalid":
        return ServiceError(400, f"body: not valid JSON ({message})", code="invalid_json")
    return ServiceError(400, f"{'.'.join(loc) or 'body'}: {message}", param=loc[0] if loc else None)


def is_openai_error(data: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]


def error_from_answer(status: int, content: bytes, retry_after: str | None = None) -> ServiceError:
    """The ServiceError in a service's error answer: OpenAI's shape as it is; BentoML's own
    (``{"error": str}``, pydantic's errors as ``detail``), FastAPI's ``{"detail": str}``, plain text
    or nothing, put into that shape."""
    retry_after_s = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
    try:
        data = json.loads(content) if content else None
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # BentoML answers some refusals as a one-item list
        data = data[0]
    if is_openai_error(data):
        error = data["error"]
        return ServiceError(
            status,
            str(error["message"]),
            param=error.get("param"),
            code=error.get("code"),
            type_=error.get("type"),
            retry_after_s=retry_after_s,
        )
    if isinstance(data, dict) and isinstance(data.get("detail"), list) and data["detail"] and status == 400:
        error = invalid_request(data["detail"])
        error.retry_after_s = retry_after_s
        return error
    if isinstance(data, dict) and isinstance(data.get("error") or data.get("detail"), str):
        message = data.get("error") or data["detail"]
    else:
        message = content.decode("utf-8", "replace").strip()[:500] or f"HTTP {status}"
    return ServiceError(status, message, retry_after_s=retry_after_s)

"""Errors the LLM bento answers in OpenAI's error shape, which OpenAI clients raise as typed exceptions."""

from __future__ import annotations

from ragyard.contracts.openai import openai_error


class APIError(Exception):
    """A request the bento refuses: HTTP status, a message naming the field, OpenAI's type and code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str = "invalid_value",
                 type_: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type_
        self.headers = headers or {}

    def body(self) -> dict:
        return openai_error(self.message, self.param, self.code, self.type)


class QueueFull(APIError):
    def __init__(self, model: str, waiting: int, retry_after_s: int):
        super().__init__(
            429, f"model {model!r} is busy: {waiting} requests already wait (llm.queue_size); retry later",
            None, "queue_full", "rate_limit_error", {"Retry-After": str(retry_after_s)})


class BackendError(APIError):
    """The model backend failed (a provider's 5xx, an engine error): a 502 that says which model."""

    def __init__(self, model: str, detail: str):
        super().__init__(502, f"model {model!r} failed: {detail}", None, "backend_error", "api_error")

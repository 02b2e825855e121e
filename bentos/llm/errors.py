"""The LLM bento's own refusals, as the kit's `ServiceError` (OpenAI's error shape)."""

from __future__ import annotations

from ragyard.kit.errors import ServiceError


class QueueFull(ServiceError):
    def __init__(self, model: str, waiting: int, retry_after_s: int):
        super().__init__(
            429,
            f"model {model!r} is busy: {waiting} requests already wait (llm.queue_size); retry later",
            code="queue_full",
            retry_after_s=retry_after_s,
        )


class BackendError(ServiceError):
    """The model backend failed (a provider's 5xx, an engine error): a 502 that says which model."""

    def __init__(self, model: str, detail: str):
        super().__init__(502, f"model {model!r} failed: {detail}", code="backend_error", type_="api_error")

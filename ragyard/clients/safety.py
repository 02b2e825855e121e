"""Async client of the safety bento (`POST /check`, `POST /check_batch`), used by the router."""

from __future__ import annotations

import httpx
from tenacity import AsyncRetrying

from ragyard.clients.base import ServiceUnavailable, connection_retry
from ragyard.contracts.safety import (
    CheckBatchRequest,
    CheckBatchResponse,
    CheckRequest,
    CheckResponse,
    Direction,
)


class SafetyUnavailable(ServiceUnavailable):
    """The safety bento could not be reached or failed (5xx): callers should fail closed."""


class SafetyRequestRejected(ValueError):
    """The safety bento refused the request (4xx: empty or oversized text, unknown policy...)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message


class SafetyClient:
    """One pooled HTTP connection set; use as `async with SafetyClient(url) as safety:` or call `aclose()`."""

    def __init__(self, base_url: str, timeout: float = 30.0, attempts: int = 3):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)
        self._attempts = attempts

    async def _post(self, path: str, body: dict) -> httpx.Response:
        try:
            async for attempt in AsyncRetrying(**connection_retry(self._attempts)):
                with attempt:
                    response = await self._http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise SafetyUnavailable(f"safety at {self.base_url} unreachable: {exc!r}") from exc
        if 400 <= response.status_code < 500:
            try:
                message = str(response.json().get("error", response.text))
            except ValueError:
                message = response.text
            raise SafetyRequestRejected(response.status_code, message[:500])
        if response.status_code != 200:
            raise SafetyUnavailable(f"safety at {self.base_url} answered {response.status_code}: {response.text[:300]}")
        return response

    async def check(self, text: str, direction: Direction, policy: str = "default") -> CheckResponse:
        body = CheckRequest(text=text, direction=direction, policy=policy).model_dump()
        return CheckResponse.model_validate_json((await self._post("/check", body)).content)

    async def check_batch(self, items: list[CheckRequest]) -> list[CheckResponse]:
        body = CheckBatchRequest(items=items).model_dump()
        return CheckBatchResponse.model_validate_json((await self._post("/check_batch", body)).content).results

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "SafetyClient":
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

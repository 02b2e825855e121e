"""Async client of the tools bento (`GET /v1/tools`, `POST /v1/tools/{name}`), for the router's agent.

Calls name the caller's key: the router passes the key id (`X-Ragyard-Key-Id`), anyone else a ragyard
API key. A tool call is not retried once it may have reached the bento (a tool may not be
idempotent); only a connection that was never made is tried again."""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ragyard.clients.base import ServiceUnavailable, connection_retry
from ragyard.contracts.tools import KEY_ID_HEADER, ToolCall, ToolList, ToolResult

NEVER_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout)


class ToolsUnavailable(ServiceUnavailable):
    """The tools bento could not be reached, or answered something that is not its API."""


class ToolCallFailed(RuntimeError):
    """The bento answered with an error about the call (OpenAI's error shape): `status` 400 bad
    arguments, 401/403 the key, 404 unknown tool, 422 refused, 502 failed, 503 unavailable, 504 timeout."""

    def __init__(self, status: int, message: str, code: str | None, param: str | None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.message, self.code, self.param = status, message, code, param


class ToolsClient:
    """`http`: the caller's async connection pool (the caller closes it). Either `key_id` (the router)
    or `api_key` names the caller."""

    def __init__(self, url: str, http: httpx.AsyncClient, *, key_id: str | None = None, api_key: str | None = None,
                 attempts: int = 3):
        self.url = url.rstrip("/")
        self.http = http
        self.attempts = attempts
        if (key_id is None) == (api_key is None):
            raise ValueError("give either key_id or api_key")
        self.headers = {KEY_ID_HEADER: key_id} if key_id is not None else {"Authorization": f"Bearer {api_key}"}

    async def list(self, timeout_s: float = 10.0) -> ToolList:
        response = await self._request("GET", "/v1/tools", timeout_s, connection_retry(self.attempts))
        return ToolList.model_validate_json(response.content)

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float = 60.0) -> ToolResult:
        retry = {"retry": retry_if_exception_type(NEVER_CONNECTED), "stop": stop_after_attempt(self.attempts),
                 "wait": wait_exponential(multiplier=0.2, max=2.0), "reraise": True}
        response = await self._request("POST", f"/v1/tools/{name}", timeout_s, retry,
                                       json=ToolCall(arguments=arguments).model_dump())
        return ToolResult.model_validate_json(response.content)

    async def _request(self, method: str, path: str, timeout_s: float, retry: dict, **kwargs) -> httpx.Response:
        try:
            async for attempt in AsyncRetrying(**retry):
                with attempt:
                    response = await self.http.request(method, f"{self.url}{path}", headers=self.headers,
                                                       timeout=timeout_s, **kwargs)
        except httpx.HTTPError as exc:
            raise ToolsUnavailable(f"tools bento at {self.url} unreachable: {exc!r}") from exc
        if response.status_code == 200:
            return response
        try:
            error = response.json()["error"]
            message = error["message"]
        except (ValueError, KeyError, TypeError):
            raise ToolsUnavailable(f"tools bento at {self.url} answered {response.status_code}: "
                                   f"{response.text[:300]}") from None
        raise ToolCallFailed(response.status_code, message, error.get("code"), error.get("param"))

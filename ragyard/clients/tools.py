"""Async client of the tools bento (`GET /v1/tools`, `POST /v1/tools/{name}`), for the router's agent.

Calls name the caller's key: the router passes the key id (`X-Ragyard-Key-Id`), anyone else a ragyard
API key. On the kit's base client, with two differences a tool needs:

- a tool call is not retried once it may have reached the bento (a tool may not be idempotent):
  only a connection that was never made is tried again;
- a tool's own failure (it failed, its MCP server is down, it timed out: `TOOL_FAILURE_CODES`) is a
  `ToolCallFailed`, told apart from the bento itself being `Unavailable` and from a `Rejected` call.
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ragyard.clients.base import ServiceClient
from ragyard.contracts.tools import KEY_ID_HEADER, TOOL_FAILURE_CODES, ToolCall, ToolList, ToolResult
from ragyard.kit.errors import ServiceError, Unavailable, error_from_answer


class ToolCallFailed(Exception):
    """The tool ran, or could not run, behind a bento that answered: `error` says which (502 failed,
    503 unavailable, 504 timed out)."""

    def __init__(self, error: ServiceError):
        super().__init__(f"tool call failed ({error.status} {error.code}): {error.message}")
        self.error = error


def _never_connected(exc: BaseException) -> bool:
    return isinstance(exc, Unavailable) and isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))


class ToolsClient(ServiceClient):
    """`pool`: the caller's async connection pool (the caller closes it). Either `key_id` (the router)
    or `api_key` names the caller."""

    def __init__(
        self,
        url: str,
        pool: httpx.AsyncClient | None = None,
        *,
        key_id: str | None = None,
        api_key: str | None = None,
        attempts: int = 3,
        timeout_s: float = 60.0,
    ):
        if (key_id is None) == (api_key is None):
            raise ValueError("give either key_id or api_key")
        headers = {KEY_ID_HEADER: key_id} if key_id is not None else {"Authorization": f"Bearer {api_key}"}
        super().__init__("tools bento", url, timeout_s=timeout_s, attempts=attempts, pool=pool, headers=headers)

    async def list(self, timeout_s: float = 10.0) -> ToolList:
        response = await self.arequest("GET", "/v1/tools", timeout_s=timeout_s)
        return ToolList.model_validate_json(response.content)

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float | None = None) -> ToolResult:
        body = ToolCall(arguments=arguments).model_dump()
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_never_connected),
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        ):
            with attempt:
                try:
                    response = await self._async_pool().request(
                        "POST",
                        f"{self.url}/v1/tools/{name}",
                        json=body,
                        headers=self.headers,
                        timeout=timeout_s or self.timeout_s,
                    )
                except httpx.TransportError as exc:
                    raise self.unreachable(exc, timeout_s or self.timeout_s) from exc
                return ToolResult.model_validate_json(self.answered(response).content)
        raise AssertionError("tenacity returns or raises")

    def answered(self, response: httpx.Response) -> httpx.Response:
        if not response.is_success:
            error = error_from_answer(response.status_code, response.content, response.headers.get("retry-after"))
            if error.code in TOOL_FAILURE_CODES:
                raise ToolCallFailed(error)
        return super().answered(response)

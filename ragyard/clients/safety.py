"""Client of the safety bento (`POST /check`, `POST /check_batch`), used by the router. Callers fail
closed when it is `Unavailable`."""

from __future__ import annotations

import httpx

from ragyard.clients.base import ServiceClient
from ragyard.contracts.safety import CheckBatchRequest, CheckBatchResponse, CheckRequest, CheckResponse, Direction


class SafetyClient(ServiceClient):
    def __init__(self, url: str, timeout_s: float = 30.0, attempts: int = 3, pool: httpx.AsyncClient | None = None):
        super().__init__("safety", url, timeout_s=timeout_s, attempts=attempts, pool=pool)

    async def check(self, text: str, direction: Direction, policy: str = "default") -> CheckResponse:
        body = CheckRequest(text=text, direction=direction, policy=policy).model_dump()
        return CheckResponse.model_validate_json((await self.arequest("POST", "/check", json=body)).content)

    async def check_batch(self, items: list[CheckRequest]) -> list[CheckResponse]:
        body = CheckBatchRequest(items=items).model_dump()
        response = await self.arequest("POST", "/check_batch", json=body)
        return CheckBatchResponse.model_validate_json(response.content).results

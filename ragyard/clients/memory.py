"""Async client of the memory bento (`/v1/memories`, `ragyard.contracts.memory`): the router's (recall
before an answer, the exchange after it) and the evals'. On the kit's base client: `Unavailable` when the
bento cannot answer (the router then answers without memories), `Rejected` when it refuses a request
(400 a bad field, 404 no such memory or job for this user, 413 over a bound, 422 refused by the safety
policy). Retrying a write is safe enough: an add that was stored already comes back as a duplicate.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import httpx

from ragyard.clients.base import ServiceClient
from ragyard.contracts.memory import (
    AddMemory,
    AddResult,
    Deleted,
    ExchangeMessage,
    JobStatus,
    MemoryItem,
    MemoryPage,
    SearchMemories,
    SearchMode,
    SearchResult,
    UpdateMemory,
)

ROOT = "/v1/memories"


class MemoryClient(ServiceClient):
    """`pool`: the caller's async connection pool (the caller closes it). Every call names the owner:
    `scope` (the router's key owner, the tenant with issue 16) and `user`."""

    def __init__(self, url: str, pool: httpx.AsyncClient | None = None, *, attempts: int = 3, timeout_s: float = 30.0):
        super().__init__("memory bento", url, timeout_s=timeout_s, attempts=attempts, pool=pool)

    async def add_text(
        self, scope: str, user: str, text: str, ttl_s: int | None = None, at: float | None = None
    ) -> AddResult:
        return await self._add(AddMemory(scope=scope, user=user, text=text, ttl_s=ttl_s, at=at))

    async def add_exchange(
        self,
        scope: str,
        user: str,
        messages: list[ExchangeMessage],
        at: float | None = None,
        opt_out: bool = False,
        ttl_s: int | None = None,
    ) -> AddResult:
        """Queue an exchange for extraction (status "queued" with a job id), or "skipped"."""
        return await self._add(
            AddMemory(scope=scope, user=user, messages=messages, at=at, opt_out=opt_out, ttl_s=ttl_s)
        )

    async def search(
        self,
        scope: str,
        user: str,
        query: str,
        top_k: int = 5,
        mode: SearchMode = "hybrid",
        timeout_s: float | None = None,
    ) -> SearchResult:
        body = SearchMemories(scope=scope, user=user, query=query, top_k=top_k, mode=mode).model_dump()
        response = await self.arequest("POST", f"{ROOT}/search", json=body, timeout_s=timeout_s)
        return SearchResult.model_validate_json(response.content)

    async def list(self, scope: str, user: str, limit: int = 100, offset: int = 0) -> MemoryPage:
        query = _owner(scope, user, limit=limit, offset=offset)
        return MemoryPage.model_validate_json((await self.arequest("GET", f"{ROOT}?{query}")).content)

    async def get(self, scope: str, user: str, memory_id: str) -> MemoryItem:
        response = await self.arequest("GET", f"{ROOT}/{quote(memory_id, safe='')}?{_owner(scope, user)}")
        return MemoryItem.model_validate_json(response.content)

    async def job(self, scope: str, user: str, job_id: str) -> JobStatus:
        response = await self.arequest("GET", f"{ROOT}/jobs/{quote(job_id, safe='')}?{_owner(scope, user)}")
        return JobStatus.model_validate_json(response.content)

    async def update(
        self, scope: str, user: str, memory_id: str, text: str | None = None, ttl_s: int | None = None
    ) -> MemoryItem:
        body = UpdateMemory(scope=scope, user=user, text=text, ttl_s=ttl_s).model_dump(exclude_none=True)
        return MemoryItem.model_validate_json(
            (await self.arequest("PATCH", f"{ROOT}/{quote(memory_id, safe='')}", json=body)).content
        )

    async def delete(self, scope: str, user: str, memory_id: str) -> Deleted:
        response = await self.arequest("DELETE", f"{ROOT}/{quote(memory_id, safe='')}?{_owner(scope, user)}")
        return Deleted.model_validate_json(response.content)

    async def delete_user(self, scope: str, user: str) -> Deleted:
        """Everything about the user: every vector and row."""
        return Deleted.model_validate_json((await self.arequest("DELETE", f"{ROOT}?{_owner(scope, user)}")).content)

    async def _add(self, body: AddMemory) -> AddResult:
        response = await self.arequest("POST", ROOT, json=body.model_dump(mode="json", exclude_none=True))
        return AddResult.model_validate_json(response.content)


def _owner(scope: str, user: str, **more: int) -> str:
    return urlencode({"scope": scope, "user": user, **more})

"""Client of the retriever bento (`POST /search`, `GET /index`), used by the router."""

from __future__ import annotations

import httpx

from ragyard.clients.base import ServiceClient
from ragyard.contracts.retriever import IndexInfo, SearchRequest, SearchResponse


class RetrieverClient(ServiceClient):
    def __init__(self, url: str, pool: httpx.AsyncClient | None = None, attempts: int = 2):
        super().__init__("retriever", url, attempts=attempts, pool=pool)

    async def search(self, request: SearchRequest, timeout_s: float) -> SearchResponse:
        response = await self.arequest("POST", "/search", json=request.model_dump(), timeout_s=timeout_s)
        return SearchResponse.model_validate_json(response.content)

    async def index(self, timeout_s: float) -> IndexInfo:
        """The collection the retriever searches, its content version and row count."""
        return IndexInfo.model_validate_json((await self.arequest("GET", "/index", timeout_s=timeout_s)).content)

"""Async client of the retriever bento (`POST /search`, `GET /index`), used by the router."""

from __future__ import annotations

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ragyard.clients.base import ServiceUnavailable
from ragyard.contracts.retriever import IndexInfo, SearchRequest, SearchResponse


class RetrieverUnavailable(ServiceUnavailable):
    """The retriever could not be reached, failed, or has no index to search (5xx)."""


def _transient(exc: BaseException) -> bool:
    """Worth another try: connection trouble, a timeout, a 5xx (e.g. a collection still loading)."""
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class RetrieverClient:
    """`http`: the caller's async connection pool (the caller closes it)."""

    def __init__(self, url: str, http: httpx.AsyncClient, attempts: int = 2):
        self.url = url.rstrip("/")
        self.http = http
        self.attempts = attempts

    async def search(self, request: SearchRequest, timeout_s: float) -> SearchResponse:
        response = await self._request("POST", "/search", timeout_s, json=request.model_dump())
        return SearchResponse.model_validate_json(response.content)

    async def index(self, timeout_s: float) -> IndexInfo:
        """The collection the retriever searches, its content version and row count."""
        return IndexInfo.model_validate_json((await self._request("GET", "/index", timeout_s)).content)

    async def _request(self, method: str, path: str, timeout_s: float, **kwargs) -> httpx.Response:
        try:
            async for attempt in AsyncRetrying(retry=retry_if_exception(_transient),
                                               stop=stop_after_attempt(self.attempts),
                                               wait=wait_random_exponential(multiplier=0.1, max=2.0), reraise=True):
                with attempt:
                    response = await self.http.request(method, f"{self.url}{path}", timeout=timeout_s, **kwargs)
                    if response.status_code >= 500:
                        response.raise_for_status()
        except httpx.HTTPError as exc:
            raise RetrieverUnavailable(f"retriever at {self.url} unavailable: {exc!r}") from exc
        if response.status_code != 200:
            raise RetrieverUnavailable(
                f"retriever at {self.url} answered {response.status_code}: {response.text[:300]}")
        return response

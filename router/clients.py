"""Async clients of the retriever and embedder bentos, speaking their wire schemas."""

from __future__ import annotations

import httpx
import numpy as np

from ragyard.contracts.embedder import EmbedRequest, EmbedResponse
from ragyard.contracts.retriever import SearchRequest, SearchResponse
from router.resilience import BackendUnavailable, with_retries


class RetrieverClient:
    def __init__(self, url: str, http: httpx.AsyncClient, attempts: int = 2):
        self.url = url.rstrip("/")
        self.http = http
        self.attempts = attempts

    async def search(self, request: SearchRequest, timeout_s: float) -> SearchResponse:
        async def call() -> httpx.Response:
            response = await self.http.post(f"{self.url}/search", json=request.model_dump(), timeout=timeout_s)
            if response.status_code >= 500:
                response.raise_for_status()
            return response

        try:
            response = await with_retries(call, self.attempts)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"retriever at {self.url} unavailable: {exc!r}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"retriever at {self.url} answered {response.status_code}: {response.text[:300]}")
        return SearchResponse.model_validate_json(response.content)


class EmbedderClient:
    def __init__(self, url: str, http: httpx.AsyncClient):
        self.url = url.rstrip("/")
        self.http = http

    async def embed(self, text: str, timeout_s: float) -> np.ndarray:
        """The unit vector of one text."""
        try:
            response = await self.http.post(f"{self.url}/embed", json=EmbedRequest(texts=[text]).model_dump(),
                                             timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"embedder at {self.url} unavailable: {exc!r}") from exc
        if response.status_code != 200:
            raise BackendUnavailable(f"embedder at {self.url} answered {response.status_code}: {response.text[:300]}")
        return np.asarray(EmbedResponse.model_validate_json(response.content).embeddings[0], dtype=np.float32)

"""Client of the embedder bento's `POST /embed`: `embed` from threads (the retriever, ingestion
through the bento), `aembed` from an event loop (the router)."""

from __future__ import annotations

import httpx

from ragyard.clients.base import ServiceClient
from ragyard.contracts.embedder import EmbedRequest, EmbedResponse


class EmbedderClient(ServiceClient):
    def __init__(self, url: str, timeout_s: float = 30.0, attempts: int = 4, pool: httpx.AsyncClient | None = None):
        super().__init__("embedder", url, timeout_s=timeout_s, attempts=attempts, pool=pool)

    def embed(self, texts: list[str], normalize: bool = True) -> EmbedResponse:
        body = EmbedRequest(texts=texts, normalize=normalize).model_dump()
        return EmbedResponse.model_validate_json(self.request("POST", "/embed", json=body).content)

    async def aembed(self, texts: list[str], timeout_s: float | None = None, normalize: bool = True) -> EmbedResponse:
        body = EmbedRequest(texts=texts, normalize=normalize).model_dump()
        response = await self.arequest("POST", "/embed", json=body, timeout_s=timeout_s)
        return EmbedResponse.model_validate_json(response.content)

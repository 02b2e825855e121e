"""Client of the embedder bento's `POST /embed`, retried on connection errors: `embed` from threads
(the retriever, ingestion through the bento), `aembed` from an event loop (the router)."""

from __future__ import annotations

import httpx
from tenacity import AsyncRetrying, retry

from ragyard.clients.base import ServiceUnavailable, connection_retry
from ragyard.contracts.embedder import EmbedRequest, EmbedResponse


class EmbedderUnavailable(ServiceUnavailable):
    """The embedder could not be reached or did not answer with vectors."""


class EmbedderClient:
    """`http`: the caller's async connection pool, which `aembed` runs on (and the caller closes)."""

    def __init__(self, url: str, timeout_s: float = 30.0, attempts: int = 4, http: httpx.AsyncClient | None = None):
        self.url = url.rstrip("/")
        self.attempts = attempts
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._post = retry(**connection_retry(attempts))(self._http.post)
        self._async_http = http

    def embed(self, texts: list[str], normalize: bool = True) -> EmbedResponse:
        try:
            response = self._post("/embed", json=EmbedRequest(texts=texts, normalize=normalize).model_dump())
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"embedder at {self.url} unreachable: {exc!r}") from exc
        return self._vectors(response)

    async def aembed(self, texts: list[str], timeout_s: float, normalize: bool = True) -> EmbedResponse:
        if self._async_http is None:
            raise RuntimeError("EmbedderClient.aembed needs the async connection pool `http`")
        body = EmbedRequest(texts=texts, normalize=normalize).model_dump()
        try:
            async for attempt in AsyncRetrying(**connection_retry(self.attempts)):
                with attempt:
                    response = await self._async_http.post(f"{self.url}/embed", json=body, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"embedder at {self.url} unreachable: {exc!r}") from exc
        return self._vectors(response)

    def _vectors(self, response: httpx.Response) -> EmbedResponse:
        if response.status_code != 200:
            raise EmbedderUnavailable(f"embedder at {self.url} answered {response.status_code}: {response.text[:300]}")
        return EmbedResponse.model_validate_json(response.content)

    def close(self) -> None:
        self._http.close()

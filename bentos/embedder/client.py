"""Client of the embedder bento: `POST /embed`, retried on connection errors (retriever, ingestion)."""

from __future__ import annotations

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from ragyard.contracts.embedder import EmbedRequest, EmbedResponse


class EmbedderUnavailable(RuntimeError):
    """The embedder could not be reached or did not answer with vectors."""


_RETRIABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError)


class EmbedderClient:
    def __init__(self, url: str, timeout_s: float = 30.0, attempts: int = 4):
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._post = retry(
            retry=retry_if_exception_type(_RETRIABLE),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        )(self._http.post)

    def embed(self, texts: list[str], normalize: bool = True) -> EmbedResponse:
        body = EmbedRequest(texts=texts, normalize=normalize).model_dump()
        try:
            response = self._post("/embed", json=body)
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(f"embedder at {self.url} unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise EmbedderUnavailable(
                f"embedder at {self.url} answered {response.status_code}: {response.text[:300]}")
        return EmbedResponse.model_validate_json(response.content)

    def close(self) -> None:
        self._http.close()

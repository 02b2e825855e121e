"""The embedder bento: texts in, vectors out, over `POST /embed` and OpenAI's `POST /v1/embeddings`.

Start it with ``bentoml serve bentos.embedder.service:Embedder --host 127.0.0.1 --port 3001``.
Both routes share one adaptive-batching API (`encode_batch`) and one LRU cache of vectors.
"""

import base64
from typing import Annotated

import aiohttp
import anyio
import bentoml
import numpy as np
from fastapi import FastAPI
from pydantic import Field
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from bentos.embedder.cache import EmbeddingCache, cache_key
from bentos.embedder.openai_schemas import (
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
)
from ragyard.contracts.embedder import EmbedRequest, EmbedResponse
from ragyard.embedding import EmbeddingModel, resolve_model_path
from ragyard.kit.errors import ServiceError
from ragyard.kit.metrics import counter
from ragyard.kit.serving import answers_errors, serve_errors
from ragyard.settings import EmbedderBentoSettings, EmbedderSettings

# The settings, parsed once per process, here: the decorators below need the bounds at import.
SETTINGS = EmbedderBentoSettings()
LIMITS: EmbedderSettings = SETTINGS.embedder
# Each /embed or /v1/embeddings request holds one slot and, on a cache miss, a second one for the
# in-process call to the batching API: 64 slots serve 32 concurrent clients without a 429.
MAX_CONCURRENCY = 64
MAX_BATCH_SIZE = max(2, LIMITS.batch_size)
SELF_CALL_ATTEMPTS = 3

openai_app = FastAPI(title="ragyard embedder: OpenAI-compatible API", docs_url=None, redoc_url=None)
CACHE_HITS = counter("ragyard_embedder_cache_hits", "Texts answered from the embedding cache", ["model"])
CACHE_MISSES = counter("ragyard_embedder_cache_misses", "Texts the embedding cache did not hold", ["model"])


def check_size(texts: list[str], field: str, limits: EmbedderSettings) -> None:
    """A 413 naming the field when `texts` exceed the configured bounds."""
    if len(texts) > limits.max_texts_per_request:
        raise ServiceError(
            413, f"{field}: {len(texts)} texts exceed max_texts_per_request={limits.max_texts_per_request}", param=field
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars_per_text:
            raise ServiceError(
                413,
                f"{field}[{i}]: {len(text)} characters exceed max_chars_per_text={limits.max_chars_per_text}",
                param=field,
            )


@bentoml.service(resources={"cpu": "2"}, traffic={"timeout": 60, "max_concurrency": MAX_CONCURRENCY})
@bentoml.asgi_app(openai_app, path="/v1")
class Embedder:
    def __init__(self) -> None:
        from transformers import AutoTokenizer

        self.limits = LIMITS
        # On an exported backend, the first start builds the export (seconds; once per model and versions).
        self.model = EmbeddingModel.from_settings(SETTINGS)
        # The first forward pass sets up the backend's kernels and threads: here, before /readyz, on
        # the main thread, not on the first request's worker thread (docs/benchmarks.md, Embedder).
        self.model.encode(["warm-up on the main thread, before /readyz"])
        if self.model.dim != self.limits.dim:
            raise RuntimeError(
                f"model {self.limits.model!r} makes {self.model.dim}-dim vectors, "
                f"settings say embedder.dim={self.limits.dim}"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.limits.model))
        name = self.limits.model
        self.cache = EmbeddingCache(
            self.limits.cache_entries,
            on_hits=lambda n: CACHE_HITS.labels(model=name).inc(n),
            on_misses=lambda n: CACHE_MISSES.labels(model=name).inc(n),
        )

    def __is_ready__(self) -> bool:
        return self.model is not None

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=60_000)
    def encode_batch(
        self,
        texts: Annotated[
            list[Annotated[str, Field(max_length=LIMITS.max_chars_per_text)]],
            Field(max_length=LIMITS.max_texts_per_request),
        ],
    ) -> list[list[float]]:
        """Raw (unnormalized) vectors; the adaptive batcher merges concurrent callers' texts."""
        return self.model.encode(texts, normalize=False).tolist()

    @retry(
        retry=retry_if_exception_type(aiohttp.ClientConnectionError),
        stop=stop_after_attempt(SELF_CALL_ATTEMPTS),
        reraise=True,
    )
    async def encode_in_batches(self, texts: list[str]) -> list[list[float]]:
        """`encode_batch` through BentoML's batcher, which is reached by an in-process HTTP client.

        BentoML 1.4 replaces that client's aiohttp session every 100 calls and closes the old one
        with other calls still on it; under concurrent load those fail ("Server disconnected",
        "Cannot write to closing transport") and were 500s. Encoding is idempotent: such a call is
        made again, on the new session.
        """
        # BentoML adds `to_async` to a service class when it decorates it: no type declares it.
        return await self.to_async.encode_batch(texts=texts)  # type: ignore[attr-defined]

    async def vectors(self, texts: list[str], normalize: bool) -> np.ndarray:
        """Vectors for `texts`, from the cache where possible, the rest through the batcher."""
        keys = [cache_key(self.limits.model, normalize, text) for text in texts]
        cached = self.cache.get_many(keys)
        missing: dict = {}
        for key, text, vector in zip(keys, texts, cached, strict=True):
            if vector is None:
                missing.setdefault(key, text)
        fresh: dict = {}
        if missing:
            raw = np.asarray(await self.encode_in_batches(list(missing.values())), dtype=np.float32)
            if normalize:
                raw = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
            fresh = dict(zip(missing, [row.copy() for row in raw], strict=True))  # own rows: evicting one frees it
            self.cache.put_many(list(fresh.items()))
        return np.stack(
            [vector if vector is not None else fresh[key] for key, vector in zip(keys, cached, strict=True)]
        )

    @bentoml.api(route="/embed", input_spec=EmbedRequest)
    @answers_errors
    async def embed(self, texts: list[str], normalize: bool = True) -> EmbedResponse:
        """Embed up to `max_texts_per_request` texts of at most `max_chars_per_text` characters."""
        check_size(texts, "texts", self.limits)
        vectors = await self.vectors(texts, normalize)
        return EmbedResponse(model=self.limits.model, dim=self.model.dim, embeddings=vectors.tolist())

    def count_tokens(self, texts: list[str]) -> int:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])

    @openai_app.post("/embeddings", response_model=OpenAIEmbeddingResponse)
    async def openai_embeddings(self, request: OpenAIEmbeddingRequest):
        texts = [request.input] if isinstance(request.input, str) else request.input
        if not texts:
            raise ServiceError(400, "input: must not be empty", param="input")
        if request.model != self.limits.model:
            raise ServiceError(
                404,
                f"model: {request.model!r} is not served here; use {self.limits.model!r}",
                param="model",
                code="model_not_found",
            )
        if request.dimensions is not None and request.dimensions != self.model.dim:
            raise ServiceError(
                400, f"dimensions: this model makes {self.model.dim}-dim vectors only", param="dimensions"
            )
        check_size(texts, "input", self.limits)
        vectors = await self.vectors(texts, normalize=True)
        tokens = await anyio.to_thread.run_sync(self.count_tokens, texts)
        if request.encoding_format == "base64":
            encoded = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            encoded = vectors.tolist()
        return OpenAIEmbeddingResponse(
            data=[OpenAIEmbedding(index=i, embedding=e) for i, e in enumerate(encoded)],
            model=self.limits.model,
            usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens),
        )


serve_errors(Embedder, openai_app)

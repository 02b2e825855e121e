"""The retriever bento: `POST /search` over the Milvus chunk collection (dense, BM25, hybrid, rerank),
and `GET /index`, what that collection holds (the router keys its semantic cache on it).

Start it with ``bentoml serve bentos.retriever.service:Retriever --host 127.0.0.1 --port 3002``;
it reaches the embedder bento at ``RAGYARD_EMBEDDER__URL`` and Milvus at ``RAGYARD_MILVUS__URI``.
"""

import logging
import time

import anyio
import bentoml
from fastapi import FastAPI
from pymilvus import MilvusException

from bentos.retriever.filters import filter_expression
from bentos.retriever.rerank import Reranker
from bentos.retriever.search import CollectionUnavailable, Searcher
from ragyard.clients.embedder import EmbedderClient
from ragyard.contracts.retriever import Hit, IndexInfo, SearchRequest, SearchResponse, Timings
from ragyard.kit.errors import ServiceError, Unavailable
from ragyard.kit.serving import answers_errors, serve_errors
from ragyard.settings import RetrieverBentoSettings

logger = logging.getLogger("ragyard.retriever")
# GET routes beside BentoML's POST APIs; mounted at the root, it answers only the routes it has.
index_app = FastAPI(title="ragyard retriever: the index", docs_url=None, redoc_url=None)


def candidate_count(top_k: int, rerank: bool, max_top_k: int) -> int:
    """How many hits to fetch before reranking cuts them down to top_k."""
    if not rerank:
        return top_k
    return max(top_k, min(max(4 * top_k, 20), 4 * max_top_k))


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 60, "max_concurrency": 32}, threads=4)
@bentoml.asgi_app(index_app, path="/")
class Retriever:
    def __init__(self) -> None:
        settings = RetrieverBentoSettings()
        self.settings = settings
        self.limits = settings.retriever
        self.embedder = EmbedderClient(settings.embedder.url)
        self.searcher = Searcher.from_settings(settings)
        self.reranker = Reranker(self.limits.reranker_model) if self.limits.reranker_model else None
        try:
            self.searcher.ensure_loaded()
        except CollectionUnavailable as exc:  # not fatal: /readyz says so until ingestion made it
            logger.warning("%s", exc)

    def __is_ready__(self) -> bool:
        """Ready once the collection exists and is loaded (an empty one is ready, and says so per search)."""
        try:
            self.searcher.ensure_loaded()
            return True
        except CollectionUnavailable:
            return False

    @index_app.get("/index", response_model=IndexInfo)
    async def index(self):
        """The collection searched, the ingestion's content version of it, and its row count; 503 while
        it cannot be read."""
        try:
            return await anyio.to_thread.run_sync(self.searcher.index_info)
        except MilvusException as exc:
            self.searcher.forget()
            raise Unavailable(f"the index could not be read from Milvus: {exc}") from exc

    def check_bounds(self, request: SearchRequest) -> None:
        """A 4xx naming the field for what the settings bound or refuse."""
        if request.top_k > self.limits.max_top_k:
            raise ServiceError(400, f"top_k: {request.top_k} exceeds max_top_k={self.limits.max_top_k}", param="top_k")
        max_chars = self.settings.embedder.max_chars_per_text
        if len(request.query) > max_chars:
            raise ServiceError(
                413, f"query: {len(request.query)} characters exceed max_chars_per_text={max_chars}", param="query"
            )
        if request.rerank and self.reranker is None:
            raise ServiceError(
                400,
                "rerank: no reranker is configured on this retriever "
                "(set RAGYARD_RETRIEVER__RERANKER_MODEL to a CrossEncoder path)",
                param="rerank",
            )

    @bentoml.api(route="/search", input_spec=SearchRequest)
    @answers_errors
    def search(
        self, query: str, top_k: int = 5, mode: str = "hybrid", filter: dict | None = None, rerank: bool = False
    ) -> SearchResponse:
        """Top-k chunks for a query: dense, BM25 or hybrid (fused per settings), filtered, optionally reranked."""
        request = SearchRequest.model_construct(query=query, top_k=top_k, mode=mode, filter=filter or {}, rerank=rerank)
        self.check_bounds(request)
        expr = filter_expression(request.filter)
        started = time.perf_counter()
        try:
            self.searcher.ensure_loaded()
            embed_ms = 0.0
            vector = None
            if request.mode in ("dense", "hybrid"):
                vector = self.embedder.embed([request.query]).embeddings[0]
                embed_ms = (time.perf_counter() - started) * 1000
            limit = candidate_count(request.top_k, request.rerank, self.limits.max_top_k)
            search_started = time.perf_counter()
            hits = self.searcher.search(request.mode, request.query, vector, limit, expr)
            search_ms = (time.perf_counter() - search_started) * 1000
            if not hits and self.searcher.is_empty():
                raise CollectionUnavailable(f"collection {self.searcher.name!r} is empty; run the ingestion first")
        except MilvusException as exc:
            self.searcher.forget()
            self.searcher.ensure_loaded()  # a collection that went away says so
            logger.exception("search failed")
            raise Unavailable(f"search failed in Milvus: {exc.message if hasattr(exc, 'message') else exc}") from exc
        rerank_ms = 0.0
        if request.rerank and hits:
            rerank_started = time.perf_counter()
            assert self.reranker is not None, "check_bounds refuses a rerank without a reranker"
            scores = self.reranker.scores(request.query, [h["text"] for h in hits])
            for hit, score in zip(hits, scores, strict=True):
                hit["score"] = score
            hits.sort(key=lambda h: h["score"], reverse=True)
            rerank_ms = (time.perf_counter() - rerank_started) * 1000
        hits = hits[: request.top_k]
        return SearchResponse(
            hits=[Hit(**hit) for hit in hits],
            timings=Timings(
                embed_ms=round(embed_ms, 2),
                search_ms=round(search_ms, 2),
                rerank_ms=round(rerank_ms, 2),
                total_ms=round((time.perf_counter() - started) * 1000, 2),
            ),
        )


serve_errors(Retriever, index_app)

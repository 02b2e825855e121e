"""Milvus searches over the chunk collection: dense, BM25, and the two fused by hybrid_search."""

from __future__ import annotations

import threading

from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker, WeightedRanker

from ragyard import collection as col
from ragyard.contracts.retriever import IndexInfo
from ragyard.kit.errors import Unavailable
from ragyard.settings import RetrieverBentoSettings

HIT_FIELDS = [col.CHUNK_ID, col.DOC_ID, col.SOURCE, col.TITLE, col.SECTION, col.TEXT]


class CollectionUnavailable(Unavailable):
    """The collection cannot answer: missing, empty, of another dimension, or Milvus is down (a 503)."""

    def __init__(self, message: str):
        super().__init__(message, code="collection_unavailable")


BM25_PARAMS = {"metric_type": "BM25", "params": {}}


class Searcher:
    """Searches one collection; opens and loads it lazily, so the service starts before Milvus does."""

    def __init__(
        self,
        uri: str,
        token: str,
        name: str,
        dim: int,
        timeout_s: float,
        fusion: str = "rrf",
        rrf_k: int = 60,
        dense_weight: float = 0.5,
        dense_search_overrides: dict | None = None,
    ):
        self.uri, self.token, self.name, self.dim, self.timeout_s = uri, token, name, dim, timeout_s
        self.fusion, self.rrf_k, self.dense_weight = fusion, rrf_k, dense_weight
        self.dense_search_overrides = dict(dense_search_overrides or {})
        self.index_type: str | None = None  # the collection's own, read when it is loaded
        self._client: MilvusClient | None = None
        self._loaded = False
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: RetrieverBentoSettings) -> Searcher:
        r = settings.retriever
        m = settings.milvus
        return cls(
            m.uri,
            m.token,
            m.collection,
            settings.embedder.dim,
            m.timeout_s,
            fusion=r.fusion,
            rrf_k=r.rrf_k,
            dense_weight=r.dense_weight,
            dense_search_overrides=m.dense_search_params,
        )

    def ranker(self):
        if self.fusion == "weighted":
            return WeightedRanker(self.dense_weight, 1.0 - self.dense_weight)
        return RRFRanker(self.rrf_k)

    def client(self) -> MilvusClient:
        if self._client is None:
            try:
                self._client = col.connect(self.uri, self.token, self.timeout_s)
            except Exception as exc:
                raise CollectionUnavailable(f"Milvus at {self.uri} is unreachable: {exc}") from exc
        return self._client

    def ensure_loaded(self) -> MilvusClient:
        """The client, once the collection exists with the right dimension and is loaded."""
        if self._loaded:
            return self.client()
        with self._lock:
            client = self.client()
            try:
                if not client.has_collection(self.name):
                    raise CollectionUnavailable(
                        f"collection {self.name!r} does not exist in Milvus at {self.uri}; run the ingestion first"
                    )
                dim = col.collection_dim(client, self.name)
                if dim != self.dim:
                    raise CollectionUnavailable(
                        f"collection {self.name!r} holds {dim}-dim vectors but the embedder makes {self.dim}-dim ones"
                    )
                client.load_collection(self.name)
                self.index_type = col.dense_index_type(client, self.name)
            except CollectionUnavailable:
                raise
            except Exception as exc:
                raise CollectionUnavailable(f"collection {self.name!r} could not be loaded: {exc}") from exc
            self._loaded = True
            return client

    def forget(self) -> None:
        """After a failure: check the collection again on the next search."""
        self._loaded = False

    def is_empty(self) -> bool:
        return col.row_count(self.ensure_loaded(), self.name) == 0

    def index_info(self) -> IndexInfo:
        client = self.ensure_loaded()
        return IndexInfo(
            collection=self.name,
            content_version=col.content_version(client, self.name),
            rows=col.row_count(client, self.name),
        )

    def dense_params(self, limit: int) -> dict:
        """Search parameters for the collection's own dense index (loading it first tells which)."""
        self.ensure_loaded()
        assert self.index_type is not None, "ensure_loaded reads the index type"
        return col.dense_search_params(self.index_type, limit, self.dense_search_overrides)

    def dense(self, vector: list[float], limit: int, expr: str) -> list[dict]:
        result = self.ensure_loaded().search(
            self.name,
            data=[vector],
            anns_field=col.DENSE,
            limit=limit,
            filter=expr,
            output_fields=HIT_FIELDS,
            search_params=self.dense_params(limit),
        )
        return hits(result)

    def bm25(self, query: str, limit: int, expr: str) -> list[dict]:
        result = self.ensure_loaded().search(
            self.name,
            data=[query],
            anns_field=col.SPARSE,
            limit=limit,
            filter=expr,
            output_fields=HIT_FIELDS,
            search_params=BM25_PARAMS,
        )
        return hits(result)

    def hybrid(self, vector: list[float], query: str, limit: int, expr: str) -> list[dict]:
        # Each sub-search fetches more than the final limit, so that fusion has candidates to rank.
        candidates = max(2 * limit, 20)
        filter_kw = {"expr": expr} if expr else {}
        requests = [
            AnnSearchRequest(
                data=[vector], anns_field=col.DENSE, param=self.dense_params(candidates), limit=candidates, **filter_kw
            ),
            AnnSearchRequest(data=[query], anns_field=col.SPARSE, param=BM25_PARAMS, limit=candidates, **filter_kw),
        ]
        result = self.ensure_loaded().hybrid_search(
            self.name, reqs=requests, ranker=self.ranker(), limit=limit, output_fields=HIT_FIELDS
        )
        return hits(result)

    def search(self, mode: str, query: str, vector: list[float] | None, limit: int, expr: str) -> list[dict]:
        """One search in `mode`: "dense" and "hybrid" need the query's vector, "bm25" only its text."""
        if mode == "bm25":
            return self.bm25(query, limit, expr)
        if mode not in ("dense", "hybrid"):
            raise ValueError(f"unknown search mode {mode!r}")
        if vector is None:
            raise ValueError(f"a {mode} search needs the query's vector")
        return self.dense(vector, limit, expr) if mode == "dense" else self.hybrid(vector, query, limit, expr)


def hits(result) -> list[dict]:
    """Flat hit dicts (the output fields plus `score`) from a one-query Milvus result."""
    rows = result[0] if result else []
    out = []
    for row in rows:
        entity = row.get("entity", {})
        hit = {field: entity.get(field, "") for field in HIT_FIELDS}
        hit["score"] = float(row.get("distance", row.get("score", 0.0)))
        out.append(hit)
    return out

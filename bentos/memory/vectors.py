"""The memories in Milvus (ragyard/memory_collection.py): writes, deletes, and searches that never leave
one user of one scope. Calls block: the store runs them in threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

from bentos.memory.rows import Owner
from ragyard import collection as col
from ragyard import memory_collection as mc

BM25_PARAMS = {"metric_type": "BM25", "params": {}}
RRF_K = 60


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float  # dense: cosine; bm25: BM25; hybrid: reciprocal-rank fusion


class MemoryVectors:
    """One collection, opened on first use (so that the bento starts before Milvus answers)."""

    def __init__(self, uri: str, token: str, name: str, dim: int, timeout_s: float):
        self.uri, self.token, self.name, self.dim, self.timeout_s = uri, token, name, dim, timeout_s
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()

    def client(self) -> MilvusClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client = col.connect(self.uri, self.token, self.timeout_s)
                    mc.ensure_collection(client, self.name, self.dim)
                    self._client = client
        return self._client

    def forget(self) -> None:
        """After a failure: connect and load again on the next call."""
        self._client = None

    def upsert(self, owner: Owner, memory_id: str, text: str, vector: list[float], expires_at: float) -> None:
        self.client().upsert(
            self.name,
            [
                {
                    mc.ID: memory_id,
                    mc.SCOPE: owner.scope,
                    mc.USER: owner.user,
                    mc.TEXT: text,
                    mc.EXPIRES_AT: int(expires_at),
                    col.DENSE: vector,
                }
            ],
        )

    def vector(self, memory_id: str) -> list[float] | None:
        rows = self.client().query(self.name, ids=[memory_id], output_fields=[col.DENSE])
        return [float(x) for x in rows[0][col.DENSE]] if rows else None

    def delete(self, ids: list[str]) -> None:
        if ids:
            self.client().delete(self.name, ids=ids)

    def delete_owner(self, owner: Owner) -> None:
        self.client().delete(self.name, filter=mc.owner_filter(owner.scope, owner.user))

    def count_owner(self, owner: Owner) -> int:
        rows = self.client().query(
            self.name, filter=mc.owner_filter(owner.scope, owner.user), output_fields=["count(*)"]
        )
        return int(rows[0]["count(*)"])

    def delete_expired(self, now: float) -> None:
        self.client().delete(self.name, filter=mc.expired_filter(now))

    def search(
        self, owner: Owner, mode: str, query: str, vector: list[float] | None, limit: int, now: float
    ) -> list[VectorHit]:
        """The user's live memories nearest to the query: "dense" and "hybrid" need its vector."""
        client, expr = self.client(), mc.live_filter(owner.scope, owner.user, now)
        if mode in ("dense", "bm25"):
            dense = mode == "dense"
            result = client.search(
                self.name,
                data=[vector] if dense else [query],
                anns_field=col.DENSE if dense else col.SPARSE,
                limit=limit,
                filter=expr,
                output_fields=[mc.ID],
                search_params=col.dense_search_params("HNSW", limit) if dense else BM25_PARAMS,
            )
        elif mode == "hybrid":
            candidates = max(2 * limit, 20)
            requests = [
                AnnSearchRequest(
                    data=[vector],
                    anns_field=col.DENSE,
                    limit=candidates,
                    expr=expr,
                    param=col.dense_search_params("HNSW", candidates),
                ),
                AnnSearchRequest(data=[query], anns_field=col.SPARSE, limit=candidates, expr=expr, param=BM25_PARAMS),
            ]
            result = client.hybrid_search(
                self.name, reqs=requests, ranker=RRFRanker(RRF_K), limit=limit, output_fields=[mc.ID]
            )
        else:
            raise ValueError(f"unknown search mode {mode!r}")
        return [VectorHit(str(row["id"]), float(row["distance"])) for row in (result[0] if result else [])]

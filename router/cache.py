"""Response caches: exact (same request) and semantic (a similar question), bounded and with a TTL.

Both live in one table of the state database (`router.state`). An entry's `scope` digests what
must match for any hit: the requested model, the generation parameters, the conversation history
and the index version; so an answer is never served across index versions or to a request with
other parameters. The exact key adds the messages themselves. Semantic hits compare the
question's embedding (unit vectors from the embedder bento) with those of entries in the same
scope, by cosine similarity against `router.semantic_threshold`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Column, Double, Index, LargeBinary, MetaData, Table, Text, text

from router.state import ROW_ID, Store, query, transaction

TABLES = MetaData()
Table(
    "responses",
    TABLES,
    Column("id", ROW_ID, primary_key=True),
    Column("exact_key", Text, nullable=False, unique=True),
    Column("scope", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("embedding", LargeBinary),  # float32 unit vector of the question, or NULL
    Column("payload", Text, nullable=False),  # JSON: the answer, citations, model, usage of the original generation
    Column("created_at", Double, nullable=False),
    Index("responses_scope", "scope", "created_at"),
    sqlite_autoincrement=True,
)


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cache_scope(
    model: str,
    max_tokens: int | None,
    params: dict,
    prompt: dict | None,
    history: list[dict],
    context: list[dict],
    index_version: str | None,
    pseudonyms: Iterable[str],
) -> str:
    """What a cached answer must share with a request: model, parameters, prompt version,
    conversation so far (memory and earlier messages), the index version (RAG only, else None),
    and the pseudonyms input safety put in its messages: an answer about one person's email is
    never served for another's."""
    return digest(
        {
            "model": model,
            "max_tokens": max_tokens,
            "params": params,
            "prompt": prompt,
            "history": history,
            "index": index_version,
            "context": context,
            "pseudonyms": sorted(pseudonyms),
        }
    )


def exact_key(scope: str, messages: list[dict]) -> str:
    """The exact cache's key: the request's scope and its messages, verbatim."""
    return digest({"scope": scope, "messages": messages})


@dataclass(frozen=True)
class CacheKeys:
    """Where one request's answer goes in the cache: its scope, its exact key, and the question's
    vector for semantic hits (None when the embedder did not answer)."""

    scope: str
    exact_key: str
    question_vector: np.ndarray | None = None


@dataclass(frozen=True)
class CacheHit:
    kind: str  # "exact" | "semantic"
    payload: dict
    similarity: float
    question: str


class ResponseCache(Store):
    tables = TABLES

    def __init__(self, database: Path | str, ttl_s: float, max_entries: int, threshold: float):
        super().__init__(database)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.threshold = threshold

    def exact(self, exact_key: str, now: float | None = None) -> CacheHit | None:
        now = time.time() if now is None else now
        rows = query(
            self.engine,
            "SELECT payload, question FROM responses WHERE exact_key = :key AND created_at >= :since",
            key=exact_key,
            since=now - self.ttl_s,
        )
        return CacheHit("exact", json.loads(rows[0][0]), 1.0, rows[0][1]) if rows else None

    def semantic(self, scope: str, vector: np.ndarray, now: float | None = None) -> CacheHit | None:
        now = time.time() if now is None else now
        rows = query(
            self.engine,
            "SELECT embedding, payload, question FROM responses WHERE scope = :scope "
            "AND created_at >= :since AND embedding IS NOT NULL",
            scope=scope,
            since=now - self.ttl_s,
        )
        if not rows:
            return None
        matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for blob, _, _ in rows])
        similarities = matrix @ vector.astype(np.float32)
        best = int(np.argmax(similarities))
        if similarities[best] < self.threshold:
            return None
        return CacheHit("semantic", json.loads(rows[best][1]), float(similarities[best]), rows[best][2])

    def put(
        self,
        exact_key: str,
        scope: str,
        question: str,
        vector: np.ndarray | None,
        payload: dict,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        blob = vector.astype(np.float32).tobytes() if vector is not None else None
        with transaction(self.engine, lock="cache") as conn:
            # A replaced entry is a new row (a new id): the newest entries are the ones kept.
            conn.execute(text("DELETE FROM responses WHERE exact_key = :key"), {"key": exact_key})
            conn.execute(
                text(
                    "INSERT INTO responses (exact_key, scope, question, embedding, payload, created_at) "
                    "VALUES (:key, :scope, :question, :embedding, :payload, :now)"
                ),
                {
                    "key": exact_key,
                    "scope": scope,
                    "question": question,
                    "embedding": blob,
                    "payload": json.dumps(payload),
                    "now": now,
                },
            )
            conn.execute(text("DELETE FROM responses WHERE created_at < :expired"), {"expired": now - self.ttl_s})
            conn.execute(
                text("DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY id DESC LIMIT :n)"),
                {"n": self.max_entries},
            )

"""Response caches: exact (same request) and semantic (a similar question), bounded and with a TTL.

Both live in one SQLite table. An entry's `scope` digests what must match for any hit: the requested
model, the generation parameters, the conversation history and the index version; so an answer
is never served across index versions or to a request with other parameters. The exact key adds
the messages themselves. Semantic hits compare the question's embedding (unit vectors from the
embedder bento) with those of entries in the same scope, by cosine similarity against
`router.semantic_threshold`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.sqlite import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exact_key TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL,
    question TEXT NOT NULL,
    embedding BLOB,           -- float32 unit vector of the question, or NULL
    payload TEXT NOT NULL,    -- JSON: the answer, citations, model, usage of the original generation
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_scope ON responses(scope, created_at);
"""


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class CacheHit:
    kind: str  # "exact" | "semantic"
    payload: dict
    similarity: float
    question: str


class ResponseCache:
    def __init__(self, path: Path, ttl_s: float, max_entries: int, threshold: float):
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.threshold = threshold
        self.lock = threading.Lock()

    def exact(self, exact_key: str, now: float | None = None) -> CacheHit | None:
        now = time.time() if now is None else now
        with self.lock:
            row = self.conn.execute(
                "SELECT payload, question FROM responses WHERE exact_key = ? AND created_at >= ?",
                (exact_key, now - self.ttl_s)).fetchone()
        return CacheHit("exact", json.loads(row[0]), 1.0, row[1]) if row else None

    def semantic(self, scope: str, vector: np.ndarray, now: float | None = None) -> CacheHit | None:
        now = time.time() if now is None else now
        with self.lock:
            rows = self.conn.execute(
                "SELECT embedding, payload, question FROM responses WHERE scope = ? AND created_at >= ? "
                "AND embedding IS NOT NULL", (scope, now - self.ttl_s)).fetchall()
        if not rows:
            return None
        matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for blob, _, _ in rows])
        similarities = matrix @ vector.astype(np.float32)
        best = int(np.argmax(similarities))
        if similarities[best] < self.threshold:
            return None
        return CacheHit("semantic", json.loads(rows[best][1]), float(similarities[best]), rows[best][2])

    def put(self, exact_key: str, scope: str, question: str, vector: np.ndarray | None, payload: dict,
            now: float | None = None) -> None:
        now = time.time() if now is None else now
        blob = vector.astype(np.float32).tobytes() if vector is not None else None
        with self.lock, immediate(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO responses (exact_key, scope, question, embedding, payload, created_at) "
                "VALUES (?,?,?,?,?,?)", (exact_key, scope, question, blob, json.dumps(payload), now))
            self.conn.execute("DELETE FROM responses WHERE created_at < ?", (now - self.ttl_s,))
            self.conn.execute(
                "DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY id DESC LIMIT ?)",
                (self.max_entries,))

"""The ingestion ledger: which version of each document the Milvus collection holds.

A row is written only after that document's chunks are in Milvus, and removed only after its
vectors are deleted, so a run killed at any point leaves the ledger at or behind the index;
the next run then redoes exactly the documents whose rows are missing or stale.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    doc_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class LedgerEntry:
    doc_id: str
    source: str
    path: str
    content_hash: str
    fingerprint: str
    chunk_count: int
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class FailedDocument:
    """A document version that could not be indexed, and why: skipped until its file (or the
    settings fingerprint) changes, instead of failing again at full cost on every run."""

    doc_id: str
    source: str
    path: str
    content_hash: str
    fingerprint: str
    size_bytes: int
    mtime_ns: int
    reason: str
    failed_at: float


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One transaction on the SQLite file at `path`, committed on success; closed after."""
    db = sqlite3.connect(path, timeout=30)
    try:
        with db:
            yield db
    finally:
        db.close()


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self):
        return transaction(self.path)

    def entries(self) -> dict[str, LedgerEntry]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT doc_id, source, path, content_hash, fingerprint, chunk_count, size_bytes, mtime_ns"
                " FROM documents"
            ).fetchall()
        return {row[0]: LedgerEntry(*row) for row in rows}

    def record(self, entries: Iterable[LedgerEntry]) -> None:
        now = time.time()
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.doc_id,
                        e.source,
                        e.path,
                        e.content_hash,
                        e.fingerprint,
                        e.chunk_count,
                        e.size_bytes,
                        e.mtime_ns,
                        now,
                    )
                    for e in entries
                ],
            )

    def forget(self, doc_ids: Iterable[str]) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM documents WHERE doc_id = ?", [(d,) for d in doc_ids])

    def clear(self) -> None:
        """For a new, empty collection: every document is indexed anew, failed ones tried again
        (Milvus's refusals depended on the collection they were made by)."""
        with self._connect() as db:
            db.execute("DELETE FROM documents")
            db.execute("DELETE FROM failures")

    def failures(self) -> dict[str, FailedDocument]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT doc_id, source, path, content_hash, fingerprint, size_bytes, mtime_ns, reason, failed_at"
                " FROM failures"
            ).fetchall()
        return {row[0]: FailedDocument(*row) for row in rows}

    def replace_failures(self, failures: Iterable[FailedDocument]) -> None:
        """Keep exactly these failures: a run confirms every failure still current (same file,
        same settings), so the ones it does not name were fixed, changed or deleted."""
        with self._connect() as db:
            db.execute("DELETE FROM failures")
            db.executemany(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        f.doc_id,
                        f.source,
                        f.path,
                        f.content_hash,
                        f.fingerprint,
                        f.size_bytes,
                        f.mtime_ns,
                        f.reason,
                        f.failed_at,
                    )
                    for f in failures
                ],
            )

    def content_version(self, entries: dict[str, LedgerEntry] | None = None) -> str:
        """A digest of every indexed document's content hash and settings fingerprint: it changes
        exactly when what the index holds does (an edit that keeps the chunk count included).
        `entries`: the ledger's, when the caller has already read them."""
        digest = hashlib.sha256()
        for doc_id, entry in sorted((self.entries() if entries is None else entries).items()):
            digest.update(f"{doc_id}\0{entry.content_hash}\0{entry.fingerprint}\n".encode())
        return digest.hexdigest()[:16]

    def chunk_total(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COALESCE(SUM(chunk_count), 0) FROM documents").fetchone()[0])

"""Embedding that survives a failed or killed run: vectors are checkpointed batch by batch, so
the next run embeds only what is missing, and progress is reported after every batch."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.ledger import transaction
from ragyard.dagster_client import Progress

_LOOKUP_BATCH = 500  # keys per SELECT: below SQLite's limit on bound parameters


class EmbeddingCheckpoint:
    """Vectors made but not yet written to the index, keyed by model fingerprint and text hash.
    Emptied once a run has written its whole delta."""

    def __init__(self, path: Path, fingerprint: str, dim: int):
        self.path, self.fingerprint, self.dim = path, fingerprint, dim
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")

    @classmethod
    def beside(cls, ledger_path: Path, vector_space: str, dim: int) -> EmbeddingCheckpoint:
        """The checkpoint beside the ledger, for the embedding model and backend (what a vector depends
        on besides its text: ragyard.embedding.vector_space)."""
        return cls(ledger_path.parent / "embedding_checkpoint.sqlite3", f"{vector_space}\0{dim}", dim)

    def _connect(self):
        return transaction(self.path)

    def key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self.fingerprint}\0{text}".encode()).digest()

    def load(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._connect() as db:
            for i in range(0, len(keys), _LOOKUP_BATCH):
                batch = keys[i : i + _LOOKUP_BATCH]
                rows = db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(batch))})", batch
                ).fetchall()
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (self.dim,):
                        found[key] = vector
        return found

    def save(self, keys: list[bytes], vectors: np.ndarray) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in zip(keys, vectors, strict=True)],
            )

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def clear(self) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM vectors")


@dataclass(frozen=True)
class EmbeddingReport:
    encoded_texts: int  # what the model encoded in this run
    checkpointed_chunks: int  # chunks whose vector an earlier run had already made
    seconds: float


def embed_with_checkpoint(
    texts: list[str],
    encode: Callable[[list[str]], np.ndarray],
    checkpoint: EmbeddingCheckpoint,
    batch_size: int,
    report: Callable[[Progress], None],
) -> tuple[np.ndarray, EmbeddingReport]:
    """Vectors for `texts`, in order: from the checkpoint where an earlier run made them, else
    encoded `batch_size` distinct texts at a time, longest first, each batch checkpointed before the next."""
    started = time.perf_counter()
    keys = [checkpoint.key(t) for t in texts]
    known = checkpoint.load(list(set(keys)))
    positions: dict[bytes, list[int]] = {}  # texts still to encode; a repeated text is encoded once
    for i, key in enumerate(keys):
        if key not in known:
            positions.setdefault(key, []).append(i)
    vectors = np.zeros((len(texts), checkpoint.dim), dtype=np.float32)
    for i, key in enumerate(keys):
        if key in known:
            vectors[i] = known[key]
    reused = done = len(texts) - sum(len(p) for p in positions.values())
    if texts:
        report(Progress(done, len(texts)))
    # Longest first across the whole run, not only within a batch: texts of similar length share a
    # batch, so the model pads little (the encoders sort within a batch; the order here sets the
    # batches). Longest first also keeps the early rate, and so the ETA, on the safe side.
    pending = sorted(positions, key=lambda key: -len(texts[positions[key][0]]))
    encode_started = time.perf_counter()
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        encoded = encode([texts[positions[key][0]] for key in batch])
        checkpoint.save(batch, encoded)
        for key, vector in zip(batch, encoded, strict=True):
            vectors[positions[key]] = vector
            done += len(positions[key])
        report(Progress(done, len(texts), (done - reused) / (time.perf_counter() - encode_started)))
    return vectors, EmbeddingReport(len(pending), reused, time.perf_counter() - started)

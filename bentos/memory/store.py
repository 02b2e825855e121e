"""The memories, in Milvus and the state database kept in step: every write of one user runs under that
user's lock (router.state.transaction: across threads, processes and replicas), Milvus first, so that a
failed vector write leaves no row and a failed row write rolls back before it counts.

The rows are the source of truth: a search returns only memories whose row is live, so a vector that a
crash left behind is never shown, and a delete removes the vectors before the rows (a retry finishes
it). Methods block: the service runs them in threads.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace

from bentos.memory import metrics
from bentos.memory.errors import DependencyDown
from bentos.memory.rows import MemoryRow, MemoryRows, Owner, text_digest
from bentos.memory.vectors import MemoryVectors
from ragyard.contracts.memory import AppliedOperation, Origin
from router.state import transaction


@dataclass(frozen=True)
class Embedded:
    """A pseudonymized text and its vector."""

    text: str
    vector: list[float]


@dataclass
class Added:
    status: str  # "added" or "duplicate"
    row: MemoryRow
    evicted: list[str] = field(default_factory=list)


# What the extraction decided, checked against what it saw: `digest` is the text of the target then.
@dataclass(frozen=True)
class AddOp:
    memory: Embedded
    note: str | None = None  # why an update became this add


@dataclass(frozen=True)
class UpdateOp:
    target: str
    digest: str
    memory: Embedded


@dataclass(frozen=True)
class DeleteOp:
    target: str
    digest: str


class StaleNeighbours(RuntimeError):
    """A memory the extraction decided about changed or left before the decision was applied."""


class MemoryStore:
    def __init__(self, rows: MemoryRows, vectors: MemoryVectors, max_per_user: int, duplicate_similarity: float):
        self.rows, self.vectors = rows, vectors
        self.max_per_user, self.duplicate_similarity = max_per_user, duplicate_similarity

    # ---- writes ----

    def add(self, owner: Owner, memory: Embedded, origin: Origin, at: float, expires_at: float) -> Added:
        with transaction(self.rows.engine, lock=owner.lock) as conn:
            return self._add(conn, owner, memory, origin, at, expires_at)

    def _add(self, conn, owner: Owner, memory: Embedded, origin: Origin, at: float, expires_at: float) -> Added:
        now = time.time()
        same = self.rows.with_digest(conn, owner, text_digest(memory.text), now)
        if same is None:
            nearest = self.vectors.search(owner, "dense", memory.text, memory.vector, 1, now)
            if nearest and nearest[0].score >= self.duplicate_similarity:
                same = nearest[0].id
        if same is not None and (kept := self.rows.get(owner, same, now, conn)) is not None:
            return Added("duplicate", kept)
        row = MemoryRow(uuid.uuid4().hex, memory.text, origin, at, at, max(at, now), expires_at)
        self.vectors.upsert(owner, row.id, row.text, memory.vector, expires_at)
        self.rows.insert(conn, owner, row)
        evicted = self.rows.least_recently_used(conn, owner, keep=self.max_per_user)
        self._remove(conn, owner, evicted)
        metrics.OPERATIONS.labels(op="evicted").inc(len(evicted))
        return Added("added", row, evicted)

    def update(
        self, owner: Owner, memory_id: str, memory: Embedded | None, expires_at: float | None
    ) -> MemoryRow | None:
        """The memory with a new text and/or expiry; None when the user has no such memory."""
        with transaction(self.rows.engine, lock=owner.lock) as conn:
            now = time.time()
            current = self.rows.get(owner, memory_id, now, conn)
            if current is None:
                return None
            return self._replace(conn, owner, current, memory, expires_at, now)

    def _replace(
        self, conn, owner: Owner, current: MemoryRow, memory: Embedded | None, expires_at: float | None, now: float
    ) -> MemoryRow:
        expires = current.expires_at if expires_at is None else expires_at
        if memory is not None:
            row = replace(current, text=memory.text, updated_at=now, last_used_at=now, expires_at=expires)
            vector = memory.vector
        else:
            row = replace(current, updated_at=now, expires_at=expires)
            kept = self.vectors.vector(current.id)
            if kept is None:  # the row is there but Milvus lost its vector: retried, never half-applied
                raise DependencyDown("milvus", f"memory {current.id} has a row but no vector")
            vector = kept
        self.vectors.upsert(owner, row.id, row.text, vector, expires)
        self.rows.replace(conn, owner, row)
        return row

    def delete(self, owner: Owner, memory_id: str) -> bool:
        with transaction(self.rows.engine, lock=owner.lock) as conn:
            if self.rows.get(owner, memory_id, time.time(), conn) is None:
                return False
            self._remove(conn, owner, [memory_id])
            return True

    def delete_owner(self, owner: Owner) -> int:
        """Every vector and row of the user; how many rows there were."""
        with transaction(self.rows.engine, lock=owner.lock) as conn:
            self.vectors.delete_owner(owner)
            return self.rows.delete_owner(conn, owner)

    def _remove(self, conn, owner: Owner, ids: list[str]) -> None:
        self.vectors.delete(ids)
        self.rows.delete(conn, owner, ids)

    def apply(
        self, owner: Owner, plan: list[AddOp | UpdateOp | DeleteOp], origin: Origin, at: float, expires_at: float
    ) -> list[AppliedOperation]:
        """An extraction's decision, all or nothing under the user's lock; StaleNeighbours when a memory it
        decided about changed meanwhile (the caller decides again)."""
        with transaction(self.rows.engine, lock=owner.lock) as conn:
            now = time.time()
            targets = {op.target: op.digest for op in plan if not isinstance(op, AddOp)}
            current = self.rows.many(owner, list(targets), now, conn)
            if any(
                target not in current or text_digest(current[target].text) != digest
                for target, digest in targets.items()
            ):
                raise StaleNeighbours("a memory changed while the extraction decided about it")
            applied = []
            for op in plan:
                if isinstance(op, DeleteOp):
                    self._remove(conn, owner, [op.target])
                    applied.append(AppliedOperation(op="delete", memory_id=op.target, text=current[op.target].text))
                elif isinstance(op, UpdateOp):
                    row = self._replace(conn, owner, current[op.target], op.memory, expires_at, now)
                    applied.append(
                        AppliedOperation(
                            op="update", memory_id=row.id, text=row.text, note=f"was: {current[op.target].text}"
                        )
                    )
                else:
                    added = self._add(conn, owner, op.memory, origin, at, expires_at)
                    notes = [op.note, f"evicted {added.evicted}" if added.evicted else None]
                    applied.append(
                        AppliedOperation(
                            op="add" if added.status == "added" else "duplicate",
                            memory_id=added.row.id,
                            text=added.row.text,
                            note="; ".join(n for n in notes if n) or None,
                        )
                    )
            return applied

    def purge_expired(self, batch: int = 500) -> int:
        """Remove expired memories from both stores; how many rows left."""
        now = time.time()
        self.vectors.delete_expired(now)
        with transaction(self.rows.engine) as conn:
            expired = self.rows.expired(conn, now, batch)
            for memory_id, owner in expired:
                self.rows.delete(conn, owner, [memory_id])
        metrics.OPERATIONS.labels(op="expired").inc(len(expired))
        return len(expired)

    # ---- reads ----

    def search(
        self, owner: Owner, mode: str, query: str, vector: list[float] | None, top_k: int
    ) -> list[tuple[MemoryRow, float]]:
        """The user's live memories nearest to the query, best first; those returned count as used."""
        now = time.time()
        hits = self.vectors.search(owner, mode, query, vector, top_k, now)
        rows = self.rows.many(owner, [hit.id for hit in hits], now)
        found = [(rows[hit.id], hit.score) for hit in hits if hit.id in rows]
        if found:
            with transaction(self.rows.engine) as conn:
                self.rows.touch(conn, [row.id for row, _ in found], now)
        return found

    def neighbours(self, owner: Owner, vector: list[float], limit: int) -> list[tuple[MemoryRow, float]]:
        """The user's memories nearest to a vector (cosine), for the extraction to decide about."""
        now = time.time()
        hits = self.vectors.search(owner, "dense", "", vector, limit, now)
        rows = self.rows.many(owner, [hit.id for hit in hits], now)
        return [(rows[hit.id], hit.score) for hit in hits if hit.id in rows]

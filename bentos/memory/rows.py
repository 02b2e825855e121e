"""The memories' rows in the state database (router/state.py: SQLite under the home, or PostgreSQL):
the metadata Milvus does not answer well (times, counts, the order of eviction) and the source of truth
for which memories exist. Texts are stored pseudonymized, as in Milvus; no history of old texts is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Index,
    MetaData,
    Table,
    Text,
    bindparam,
    text,
)

from ragyard.contracts.memory import Origin
from router.state import Store, query

TABLES = MetaData()
Table(
    "memories",
    TABLES,
    Column("id", Text, primary_key=True),
    Column("scope", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("text_sha256", Text, nullable=False),  # of the normalized text: the exact-duplicate check
    Column("origin", Text, nullable=False),  # "text" (added as such) or "extraction"
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=False),  # added, updated, or returned by a search
    Column("expires_at", Double, nullable=False),
    Index("memories_owner_used", "scope", "user_id", "last_used_at"),
    Index("memories_expires", "expires_at"),
)

COLUMNS = "id, text, origin, created_at, updated_at, last_used_at, expires_at"


@dataclass(frozen=True)
class MemoryRow:
    id: str
    text: str
    origin: Origin
    created_at: float
    updated_at: float
    last_used_at: float
    expires_at: float


@dataclass(frozen=True)
class Owner:
    """Whose memories: a user within a scope (the router's key owner now, the tenant with issue 16)."""

    scope: str
    user: str

    @property
    def lock(self) -> str:
        """The name of the lock that serialises this user's writes (router.state.transaction)."""
        return f"memory\x00{self.scope}\x00{self.user}"


def text_digest(value: str) -> str:
    """SHA-256 of the text with case and runs of whitespace folded: the same fact written the same way."""
    return hashlib.sha256(" ".join(value.casefold().split()).encode()).hexdigest()


_OWNER = "scope = :scope AND user_id = :user"


class MemoryRows(Store):
    tables = TABLES

    def __init__(self, database: Path | str):
        super().__init__(database)

    # ---- reads (no lock; on the caller's connection inside its transaction) ----

    def get(self, owner: Owner, memory_id: str, now: float, conn: Connection | None = None) -> MemoryRow | None:
        return self.many(owner, [memory_id], now, conn).get(memory_id)

    def many(self, owner: Owner, ids: list[str], now: float, conn: Connection | None = None) -> dict[str, MemoryRow]:
        """The live rows among `ids` that belong to `owner`, by id; read on `conn` inside a transaction."""
        if not ids:
            return {}
        statement = text(f"SELECT {COLUMNS} FROM memories WHERE id IN :ids AND {_OWNER} AND expires_at > :now")
        params = {"ids": ids, "scope": owner.scope, "user": owner.user, "now": now}
        with contextlib.nullcontext(conn) if conn is not None else self.engine.connect() as reader:
            rows = reader.execute(statement.bindparams(bindparam("ids", expanding=True)), params).all()
        return {row[0]: MemoryRow(*row) for row in rows}

    def page(self, owner: Owner, now: float, limit: int, offset: int) -> tuple[list[MemoryRow], int]:
        """The user's live memories, newest first, and how many there are."""
        rows = query(
            self.engine,
            f"SELECT {COLUMNS} FROM memories WHERE {_OWNER} AND expires_at > :now "
            "ORDER BY created_at DESC, id LIMIT :limit OFFSET :offset",
            scope=owner.scope,
            user=owner.user,
            now=now,
            limit=limit,
            offset=offset,
        )
        ((total,),) = query(
            self.engine,
            f"SELECT COUNT(*) FROM memories WHERE {_OWNER} AND expires_at > :now",
            scope=owner.scope,
            user=owner.user,
            now=now,
        )
        return [MemoryRow(*row) for row in rows], int(total)

    def count_all(self, owner: Owner) -> int:
        """Every row of the user, expired ones too (what a delete of the user must leave at zero)."""
        ((total,),) = query(
            self.engine, f"SELECT COUNT(*) FROM memories WHERE {_OWNER}", scope=owner.scope, user=owner.user
        )
        return int(total)

    # ---- writes, inside the caller's transaction (the owner's lock) ----

    @staticmethod
    def with_digest(conn: Connection, owner: Owner, digest: str, now: float) -> str | None:
        row = conn.execute(
            text(f"SELECT id FROM memories WHERE {_OWNER} AND text_sha256 = :digest AND expires_at > :now"),
            {"scope": owner.scope, "user": owner.user, "digest": digest, "now": now},
        ).first()
        return row[0] if row else None

    @staticmethod
    def least_recently_used(conn: Connection, owner: Owner, keep: int) -> list[str]:
        """The user's ids beyond the `keep` most recently used (a user holds about max_per_user rows)."""
        rows = conn.execute(
            text(f"SELECT id FROM memories WHERE {_OWNER} ORDER BY last_used_at DESC, created_at DESC, id"),
            {"scope": owner.scope, "user": owner.user},
        ).all()
        return [row[0] for row in rows[keep:]]

    @staticmethod
    def insert(conn: Connection, owner: Owner, row: MemoryRow) -> None:
        conn.execute(
            text(
                "INSERT INTO memories (id, scope, user_id, text, text_sha256, origin, created_at, "
                "updated_at, last_used_at, expires_at) VALUES (:id, :scope, :user, :text, :digest, "
                ":origin, :created_at, :updated_at, :last_used_at, :expires_at)"
            ),
            {"scope": owner.scope, "user": owner.user, "digest": text_digest(row.text), **row.__dict__},
        )

    @staticmethod
    def replace(conn: Connection, owner: Owner, row: MemoryRow) -> None:
        conn.execute(
            text(
                f"UPDATE memories SET text = :text, text_sha256 = :digest, updated_at = :updated_at, "
                f"last_used_at = :last_used_at, expires_at = :expires_at WHERE id = :id AND {_OWNER}"
            ),
            {"scope": owner.scope, "user": owner.user, "digest": text_digest(row.text), **row.__dict__},
        )

    @staticmethod
    def delete(conn: Connection, owner: Owner, ids: list[str]) -> int:
        if not ids:
            return 0
        statement = text(f"DELETE FROM memories WHERE id IN :ids AND {_OWNER}")
        return conn.execute(
            statement.bindparams(bindparam("ids", expanding=True)),
            {"ids": ids, "scope": owner.scope, "user": owner.user},
        ).rowcount

    @staticmethod
    def delete_owner(conn: Connection, owner: Owner) -> int:
        return conn.execute(
            text(f"DELETE FROM memories WHERE {_OWNER}"), {"scope": owner.scope, "user": owner.user}
        ).rowcount

    @staticmethod
    def touch(conn: Connection, ids: list[str], now: float) -> None:
        statement = text("UPDATE memories SET last_used_at = :now WHERE id IN :ids")
        conn.execute(statement.bindparams(bindparam("ids", expanding=True)), {"ids": ids, "now": now})

    @staticmethod
    def expired(conn: Connection, now: float, limit: int) -> list[tuple[str, Owner]]:
        rows = conn.execute(
            text("SELECT id, scope, user_id FROM memories WHERE expires_at <= :now LIMIT :limit"),
            {"now": now, "limit": limit},
        ).all()
        return [(row[0], Owner(row[1], row[2])) for row in rows]

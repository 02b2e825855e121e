"""API keys: created by the CLI, stored as SHA-256 hashes, checked in constant time.

A key reads ``rg-<id>-<secret>``. The id finds the row; only the secret's hash is stored, and it is
compared with `hmac.compare_digest`. Secrets are 256 random bits, so a fast hash is enough (no
password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, fields

from sqlalchemy import Column, Double, Index, Integer, MetaData, Table, Text, text

from router.state import ROW_ID, Store, query, transaction

TABLES = MetaData()
Table(
    "api_keys",
    TABLES,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_sha256", Text, nullable=False),
    Column("budget", Double),  # currency; NULL = unlimited
    Column("spent", Double, nullable=False, server_default=text("0")),
    Column("rpm", Integer),  # requests per minute; NULL = unlimited
    Column("tpm", Integer),  # tokens per minute; NULL = unlimited
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
)
Table(
    "reservations",
    TABLES,
    Column("id", ROW_ID, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("amount", Double, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("reservations_key", "key_id"),
    sqlite_autoincrement=True,
)
Table(
    "usage_events",
    TABLES,
    Column("id", ROW_ID, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("at", Double, nullable=False),
    Column("tokens", Integer, nullable=False),
    Index("usage_events_key_at", "key_id", "at"),
    sqlite_autoincrement=True,
)
# Keys that may also call the platform's admin endpoints (POST /v1/documents/changed); a table of its
# own, so that state databases made before it get it without a migration.
Table("admin_keys", TABLES, Column("key_id", Text, primary_key=True), Column("granted_at", Double, nullable=False))
# Roles a key holds besides calling the router (ROLES); a table of its own for the same reason.
Table(
    "key_roles",
    TABLES,
    Column("key_id", Text, primary_key=True),
    Column("role", Text, primary_key=True),
    Column("granted_at", Double, nullable=False),
)
# reviewer: may see and decide the review queue (the review bento).
ROLES = ("reviewer",)
Table(
    "completions",
    TABLES,  # which key asked for which answer: feedback is its owner's
    Column("trace_id", Text, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Index("completions_created", "created_at"),
)

# Feedback on an answer older than this is refused (its ownership record is gone).
COMPLETION_RETENTION_S = 30 * 24 * 3600

PREFIX = "rg"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    budget: float | None
    spent: float
    rpm: int | None
    tpm: int | None
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


KEY_COLUMNS = ", ".join(field.name for field in fields(ApiKey))


class KeyStore(Store):
    """Keys, their budgets and their usage windows, in the state database all router workers share."""

    tables = TABLES

    def create(
        self,
        name: str,
        budget: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        admin: bool = False,
        roles: tuple[str, ...] = (),
    ) -> tuple[ApiKey, str]:
        """A new key; the returned secret string is shown once and never stored."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; known: {list(ROLES)}")
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with transaction(self.engine) as conn:
            conn.execute(
                text(
                    "INSERT INTO api_keys (id, name, secret_sha256, budget, rpm, tpm, created_at) "
                    "VALUES (:id, :name, :digest, :budget, :rpm, :tpm, :now)"
                ),
                {
                    "id": key_id,
                    "name": name,
                    "digest": _digest(secret),
                    "budget": budget,
                    "rpm": rpm,
                    "tpm": tpm,
                    "now": time.time(),
                },
            )
            if admin:
                conn.execute(
                    text("INSERT INTO admin_keys (key_id, granted_at) VALUES (:id, :now)"),
                    {"id": key_id, "now": time.time()},
                )
            for role in sorted(set(roles)):
                conn.execute(
                    text("INSERT INTO key_roles (key_id, role, granted_at) VALUES (:id, :role, :now)"),
                    {"id": key_id, "role": role, "now": time.time()},
                )
        created = self.get(key_id)
        assert created is not None, "the key was just stored"
        return created, f"{PREFIX}-{key_id}-{secret}"

    def is_admin(self, key_id: str) -> bool:
        return bool(query(self.engine, "SELECT 1 FROM admin_keys WHERE key_id = :id", id=key_id))

    def has_role(self, key_id: str, role: str) -> bool:
        return bool(
            query(self.engine, "SELECT 1 FROM key_roles WHERE key_id = :id AND role = :role", id=key_id, role=role)
        )

    def get(self, key_id: str) -> ApiKey | None:
        rows = query(self.engine, f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = :id", id=key_id)
        return ApiKey(*rows[0]) if rows else None

    def list(self) -> list[ApiKey]:
        return [ApiKey(*row) for row in query(self.engine, f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at")]

    def revoke(self, key_id: str) -> bool:
        with transaction(self.engine) as conn:
            result = conn.execute(
                text("UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL"),
                {"now": time.time(), "id": key_id},
            )
        return result.rowcount == 1

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key for a presented ``rg-<id>-<secret>`` string, or None."""
        parts = presented.split("-", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        key_id, secret = parts[1], parts[2]
        rows = query(self.engine, f"SELECT secret_sha256, {KEY_COLUMNS} FROM api_keys WHERE id = :id", id=key_id)
        # Compare against a dummy digest when the id is unknown, so both paths hash and compare.
        expected = rows[0][0] if rows else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or not rows:
            return None
        key = ApiKey(*rows[0][1:])
        return key if key.active else None

    def completion_owner(self, trace_id: str, now: float | None = None) -> str | None:
        """The id of the key that asked for the answer with this trace id within the retention, or None."""
        now = time.time() if now is None else now
        rows = query(
            self.engine,
            "SELECT key_id FROM completions WHERE trace_id = :id AND created_at >= :since",
            id=trace_id,
            since=now - COMPLETION_RETENTION_S,
        )
        return rows[0][0] if rows else None

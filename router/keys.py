"""API keys: created by the CLI, stored as SHA-256 hashes, checked in constant time.

A key reads ``rg-<id>-<secret>``. The id finds the row; only the secret's hash is stored, and it is
compared with `hmac.compare_digest`. Secrets are 256 random bits, so a fast hash is enough (no
password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from router.sqlite import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    budget REAL,                -- currency; NULL = unlimited
    spent REAL NOT NULL DEFAULT 0,
    rpm INTEGER,                -- requests per minute; NULL = unlimited
    tpm INTEGER,                -- tokens per minute; NULL = unlimited
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    amount REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_key ON reservations(key_id);
CREATE TABLE IF NOT EXISTS usage_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL,
    at REAL NOT NULL,
    tokens INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_events_key_at ON usage_events(key_id, at);
CREATE TABLE IF NOT EXISTS completions (  -- which key asked for which answer: feedback is its owner's
    trace_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS completions_created ON completions(created_at);
"""

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


def keys_path(home: Path) -> Path:
    return home / "router" / "keys.sqlite3"


class KeyStore:
    """Keys, their budgets and their usage windows, in one SQLite file shared by all router workers."""

    def __init__(self, path: Path):
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        self.lock = threading.Lock()  # one connection, many threads: serialize its use

    def create(self, name: str, budget: float | None = None, rpm: int | None = None,
               tpm: int | None = None) -> tuple[ApiKey, str]:
        """A new key; the returned secret string is shown once and never stored."""
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        with self.lock, immediate(self.conn):
            self.conn.execute(
                "INSERT INTO api_keys (id, name, secret_sha256, budget, rpm, tpm, created_at) VALUES (?,?,?,?,?,?,?)",
                (key_id, name, _digest(secret), budget, rpm, tpm, now))
        return self.get(key_id), f"{PREFIX}-{key_id}-{secret}"

    def get(self, key_id: str) -> ApiKey | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT id, name, budget, spent, rpm, tpm, created_at, revoked_at FROM api_keys WHERE id = ?",
                (key_id,)).fetchone()
        return ApiKey(*row) if row else None

    def list(self) -> list[ApiKey]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT id, name, budget, spent, rpm, tpm, created_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self.lock, immediate(self.conn):
            cursor = self.conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id))
        return cursor.rowcount == 1

    def authenticate(self, presented: str) -> ApiKey | None:
        """The active key for a presented ``rg-<id>-<secret>`` string, or None."""
        parts = presented.split("-", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        key_id, secret = parts[1], parts[2]
        with self.lock:
            row = self.conn.execute("SELECT secret_sha256 FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        # Compare against a dummy digest when the id is unknown, so both paths hash and compare.
        expected = row[0] if row else _digest("")
        if not hmac.compare_digest(expected, _digest(secret)) or row is None:
            return None
        key = self.get(key_id)
        return key if key and key.active else None

    def completion_owner(self, trace_id: str) -> str | None:
        """The id of the key that asked for the answer with this trace id, or None."""
        with self.lock:
            row = self.conn.execute("SELECT key_id FROM completions WHERE trace_id = ?", (trace_id,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()

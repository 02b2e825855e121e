"""SQLAlchemy engines on the state database: a SQLite file on one machine, or PostgreSQL that
several replicas share. The router's stores and the event outbox write the same SQL for both; what
differs between the two is here.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    Row,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url

# Row ids: 64-bit in Postgres; in SQLite the rowid (64-bit) is the column declared INTEGER PRIMARY KEY.
ROW_ID = BigInteger().with_variant(Integer(), "sqlite")


def connect(database: Path | str, durable: bool = False) -> Engine:
    """An engine on a SQLite file (a Path) or a PostgreSQL URL (a str).

    durable: a SQLite commit survives a power loss too (synchronous=FULL), for data that exists
    nowhere else once committed (the event outbox); otherwise it survives a crash of the process."""
    if isinstance(database, str):
        return postgres_engine(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the driver opens no transactions of its own; `transaction` opens them.
    engine = create_engine(f"sqlite:///{database}",
                           connect_args={"timeout": 30.0, "isolation_level": None, "check_same_thread": False})
    synchronous = "FULL" if durable else "NORMAL"

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection, _record) -> None:
        for pragma in ("journal_mode=WAL", f"synchronous={synchronous}", "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    return engine


@functools.cache
def postgres_engine(url: str) -> Engine:
    """One engine per database and process, shared by the stores: at most 8 connections per
    process, so that 10 replicas stay within Postgres' default max_connections of 100; a request
    that finds none free for 10 s fails (the service answers 503)."""
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), pool_pre_ping=True,
                         pool_size=4, max_overflow=4, pool_timeout=10)


@contextmanager
def transaction(engine: Engine, lock: str | None = None) -> Iterator[Connection]:
    """A write transaction. Those that name the same `lock` run one at a time, across threads,
    processes and replicas, so that a read-check-write sequence inside one is atomic.

    SQLite: BEGIN IMMEDIATE takes the database's write lock up front, whatever the name.
    Postgres: a transaction-scoped advisory lock on the name; other names run concurrently."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif lock is not None:
            lock_id = int.from_bytes(hashlib.sha256(lock.encode()).digest()[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        yield conn


def query(engine: Engine, sql: str, **params: Any) -> list[Row]:
    """The rows of one read (no lock)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()

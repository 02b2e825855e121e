"""What the event machinery keeps in the state database (a SQLite file, or PostgreSQL shared by
replicas): the outbox of events the broker has not confirmed yet, and the ids of the events a
consumer has processed.

The outbox: a publisher that cannot get a broker confirm writes the event here, and answers only once
the row is committed; a relay sends the rows when the broker is back and deletes each once confirmed.
Several relays (replicas, workers) may share one outbox: each claims a batch for a lease, so that
they do not send the same rows at once; a relay that dies leaves its claim to expire. A row sent
twice (a confirm lost on the way) is harmless: consumers drop duplicates by event id.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy import (
    Column,
    Double,
    Index,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

from ragyard.database import ROW_ID, connect, query, transaction

TABLES = MetaData()
Table("event_outbox", TABLES,
      Column("seq", ROW_ID, primary_key=True),
      Column("event_id", Text, nullable=False, unique=True),
      Column("routing_key", Text, nullable=False),
      Column("body", LargeBinary, nullable=False),
      Column("created_at", Double, nullable=False),
      Column("claim", Text),  # the relay that holds the row until claimed_until
      Column("claimed_until", Double, nullable=False, server_default=text("0")),
      sqlite_autoincrement=True)
Table("event_processed", TABLES,
      Column("consumer", Text, nullable=False),
      Column("event_id", Text, nullable=False),
      Column("processed_at", Double, nullable=False),
      PrimaryKeyConstraint("consumer", "event_id"),
      Index("event_processed_at", "processed_at"))


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    event_id: str
    routing_key: str
    body: bytes


class EventStore:
    """The outbox and the processed ids, on one database."""

    def __init__(self, database: Path | str):
        self.engine = connect(database, durable=True)
        with transaction(self.engine, lock="ragyard-events-schema") as conn:
            TABLES.create_all(conn)

    # ---- the outbox ------------------------------------------------------------------------------

    def add(self, event_id: str, routing_key: str, body: bytes) -> None:
        """Store an event until the broker has it; committed (durably) on return. Adding an event id
        that is already there changes nothing."""
        try:
            with transaction(self.engine) as conn:
                conn.execute(text("INSERT INTO event_outbox (event_id, routing_key, body, created_at) "
                                  "VALUES (:id, :key, :body, :now)"),
                             {"id": event_id, "key": routing_key, "body": body, "now": time.time()})
        except sqlalchemy.exc.IntegrityError:
            pass  # stored already (a retried request with the same event id)

    def claim(self, limit: int, lease_s: float) -> list[OutboxRow]:
        """The oldest rows no other relay holds, now held by this call's claim for `lease_s`."""
        token, now = uuid.uuid4().hex, time.time()
        with transaction(self.engine, lock="ragyard-outbox") as conn:
            conn.execute(text(
                "UPDATE event_outbox SET claim = :token, claimed_until = :until WHERE seq IN "
                "(SELECT seq FROM event_outbox WHERE claimed_until < :now ORDER BY seq LIMIT :limit)"),
                {"token": token, "until": now + lease_s, "now": now, "limit": limit})
            rows = conn.execute(text("SELECT seq, event_id, routing_key, body FROM event_outbox "
                                     "WHERE claim = :token ORDER BY seq"), {"token": token}).all()
        return [OutboxRow(seq, event_id, key, bytes(body)) for seq, event_id, key, body in rows]

    def remove(self, seqs: list[int]) -> None:
        """Rows the broker confirmed."""
        if seqs:
            with transaction(self.engine) as conn:
                conn.execute(text("DELETE FROM event_outbox WHERE seq = :seq"), [{"seq": s} for s in seqs])

    def release(self, seqs: list[int]) -> None:
        """Rows the broker did not confirm: free for the next attempt at once."""
        if seqs:
            with transaction(self.engine) as conn:
                conn.execute(text("UPDATE event_outbox SET claim = NULL, claimed_until = 0 WHERE seq = :seq"),
                             [{"seq": s} for s in seqs])

    def backlog(self) -> tuple[int, float]:
        """Rows waiting, and the age in seconds of the oldest (0 when none)."""
        [(count, oldest)] = query(self.engine, "SELECT count(*), min(created_at) FROM event_outbox")
        return int(count), (time.time() - oldest) if oldest is not None else 0.0

    # ---- processed events (consumers drop duplicates by id) ------------------------------------------

    def processed(self, consumer: str, event_id: str) -> bool:
        return bool(query(self.engine, "SELECT 1 FROM event_processed WHERE consumer = :c AND event_id = :id",
                          c=consumer, id=event_id))

    def mark_processed(self, consumer: str, event_id: str) -> None:
        try:
            with transaction(self.engine) as conn:
                conn.execute(text("INSERT INTO event_processed (consumer, event_id, processed_at) "
                                  "VALUES (:c, :id, :now)"), {"c": consumer, "id": event_id, "now": time.time()})
        except sqlalchemy.exc.IntegrityError:
            pass

    def forget_processed(self, older_than_s: float) -> int:
        """Drop ids processed longer ago than any redelivery could come (the broker keeps nothing that long)."""
        with transaction(self.engine) as conn:
            result = conn.execute(text("DELETE FROM event_processed WHERE processed_at < :before"),
                                  {"before": time.time() - older_than_s})
        return result.rowcount

    def close(self) -> None:
        self.engine.dispose()

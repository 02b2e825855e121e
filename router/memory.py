"""Conversation memory: a session id maps to its last turns (bounded), kept in the state database."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import Column, Double, Index, MetaData, Table, Text, text

from router.state import ROW_ID, Store, query, transaction

TABLES = MetaData()
Table(
    "turns",
    TABLES,
    Column("id", ROW_ID, primary_key=True),
    Column("session_id", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("messages", Text, nullable=False),  # JSON: the user message and the assistant answer of one turn
    Column("at", Double, nullable=False),
    Index("turns_session", "session_id", "id"),
    sqlite_autoincrement=True,
)


class Memory(Store):
    tables = TABLES

    def __init__(self, database: Path | str, max_turns: int, max_sessions: int):
        super().__init__(database)
        self.max_turns = max_turns
        self.max_sessions = max_sessions

    def history(self, session_id: str, key_id: str) -> list[dict]:
        """The session's last turns as chat messages, oldest first; only the key that wrote them sees them."""
        if self.max_turns == 0:
            return []
        rows = query(
            self.engine,
            "SELECT messages FROM turns WHERE session_id = :session AND key_id = :key ORDER BY id DESC LIMIT :n",
            session=session_id,
            key=key_id,
            n=self.max_turns,
        )
        return [message for (turn,) in reversed(rows) for message in json.loads(turn)]

    def append(self, session_id: str, key_id: str, question: str, answer: str) -> None:
        if self.max_turns == 0:
            return
        turn = json.dumps([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
        with transaction(self.engine, lock="memory") as conn:
            conn.execute(
                text("INSERT INTO turns (session_id, key_id, messages, at) VALUES (:session, :key, :turn, :at)"),
                {"session": session_id, "key": key_id, "turn": turn, "at": time.time()},
            )
            # Bounded: this session keeps its last max_turns turns ...
            conn.execute(
                text(
                    "DELETE FROM turns WHERE session_id = :session AND id NOT IN "
                    "(SELECT id FROM turns WHERE session_id = :session ORDER BY id DESC LIMIT :n)"
                ),
                {"session": session_id, "n": self.max_turns},
            )
            # ... and only the most recently active max_sessions sessions are kept.
            conn.execute(
                text(
                    "DELETE FROM turns WHERE session_id NOT IN (SELECT session_id FROM turns "
                    "GROUP BY session_id ORDER BY MAX(at) DESC LIMIT :n)"
                ),
                {"n": self.max_sessions},
            )

"""Conversation memory: a session id maps to its last turns (bounded), kept in SQLite."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from router.sqlite import connect, immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    messages TEXT NOT NULL,   -- JSON: the user message and the assistant answer of one turn
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_session ON turns(session_id, id);
"""


class Memory:
    def __init__(self, path: Path, max_turns: int, max_sessions: int):
        self.conn = connect(path)
        self.conn.executescript(SCHEMA)
        self.max_turns = max_turns
        self.max_sessions = max_sessions
        self.lock = threading.Lock()

    def history(self, session_id: str, key_id: str) -> list[dict]:
        """The session's last turns as chat messages, oldest first; only the key that wrote them sees them."""
        if self.max_turns == 0:
            return []
        with self.lock:
            rows = self.conn.execute(
                "SELECT messages FROM turns WHERE session_id = ? AND key_id = ? ORDER BY id DESC LIMIT ?",
                (session_id, key_id, self.max_turns)).fetchall()
        return [message for (text,) in reversed(rows) for message in json.loads(text)]

    def append(self, session_id: str, key_id: str, question: str, answer: str) -> None:
        if self.max_turns == 0:
            return
        turn = json.dumps([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
        with self.lock, immediate(self.conn):
            self.conn.execute("INSERT INTO turns (session_id, key_id, messages, at) VALUES (?,?,?,?)",
                              (session_id, key_id, turn, time.time()))
            # Bounded: this session keeps its last max_turns turns ...
            self.conn.execute(
                "DELETE FROM turns WHERE session_id = ? AND id NOT IN "
                "(SELECT id FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?)",
                (session_id, session_id, self.max_turns))
            # ... and only the most recently active max_sessions sessions are kept.
            self.conn.execute(
                "DELETE FROM turns WHERE session_id NOT IN (SELECT session_id FROM turns GROUP BY session_id "
                "ORDER BY MAX(at) DESC LIMIT ?)", (self.max_sessions,))

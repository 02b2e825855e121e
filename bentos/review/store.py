"""The review queue: one row per flagged answer (`answer.flagged`, keyed by its event id), pending until
a reviewer decides it once.

In the state database (`router.state`: SQLite under RAGYARD_HOME, or the shared PostgreSQL). A flag
delivered twice is stored once; a second decision on one review changes nothing (`decide` says so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Column, Double, Index, MetaData, Table, Text, text

from ragyard.events.schema import AnswerFlagged
from router.state import Store, query, transaction

Status = Literal["pending", "approved", "edited", "rejected"]
Decision = Literal["approve", "edit", "reject"]
STATUS_OF: dict[Decision, Status] = {"approve": "approved", "edit": "edited", "reject": "rejected"}

TABLES = MetaData()
Table(
    "reviews",
    TABLES,
    Column("id", Text, primary_key=True),  # the flag's event id
    Column("flag", Text, nullable=False),  # the AnswerFlagged event as JSON
    Column("flagged_at", Double, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("final_answer", Text),  # the answer approved or as edited
    Column("reviewer", Text),  # the deciding key's id
    Column("comment", Text),
    Column("decided_at", Double),
    Index("reviews_status_flagged", "status", "flagged_at"),
)


@dataclass(frozen=True)
class Review:
    id: str
    flag: AnswerFlagged
    status: Status
    final_answer: str | None
    reviewer: str | None
    comment: str | None
    decided_at: float | None

    @property
    def pending(self) -> bool:
        return self.status == "pending"


_COLUMNS = "id, flag, status, final_answer, reviewer, comment, decided_at"


def _review(row) -> Review:
    return Review(row[0], AnswerFlagged.model_validate_json(row[1]), *row[2:])


class ReviewStore(Store):
    tables = TABLES

    def add(self, flag: AnswerFlagged) -> bool:
        """Queue the flag; False when it is queued already (a redelivery)."""
        with transaction(self.engine, lock="reviews") as conn:
            if conn.execute(text("SELECT 1 FROM reviews WHERE id = :id"), {"id": flag.id}).first():
                return False
            conn.execute(
                text("INSERT INTO reviews (id, flag, flagged_at, status) VALUES (:id, :flag, :at, 'pending')"),
                {"id": flag.id, "flag": flag.model_dump_json(), "at": flag.occurred_at},
            )
        return True

    def get(self, review_id: str) -> Review | None:
        rows = query(self.engine, f"SELECT {_COLUMNS} FROM reviews WHERE id = :id", id=review_id)
        return _review(rows[0]) if rows else None

    def listing(self, status: Status | None = "pending", limit: int = 50) -> list[Review]:
        """Oldest first: the flag that has waited longest leads."""
        where = "WHERE status = :status" if status else ""
        rows = query(
            self.engine,
            f"SELECT {_COLUMNS} FROM reviews {where} ORDER BY flagged_at, id LIMIT :limit",
            status=status,
            limit=limit,
        )
        return [_review(row) for row in rows]

    def pending_count(self) -> int:
        return int(query(self.engine, "SELECT COUNT(*) FROM reviews WHERE status = 'pending'")[0][0])

    def oldest_pending_at(self) -> float | None:
        return query(self.engine, "SELECT MIN(flagged_at) FROM reviews WHERE status = 'pending'")[0][0]

    def decide(
        self, review_id: str, decision: Decision, final_answer: str | None, reviewer: str, comment: str | None
    ) -> bool:
        """Record the decision; False when the review was decided already (it stays as it was)."""
        with transaction(self.engine, lock="reviews") as conn:
            result = conn.execute(
                text(
                    "UPDATE reviews SET status = :status, final_answer = :answer, reviewer = :reviewer, "
                    "comment = :comment, decided_at = :now WHERE id = :id AND status = 'pending'"
                ),
                {
                    "status": STATUS_OF[decision],
                    "answer": final_answer,
                    "reviewer": reviewer,
                    "comment": comment,
                    "now": time.time(),
                    "id": review_id,
                },
            )
        return result.rowcount == 1

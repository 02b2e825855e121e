"""Pinned answers: an answer a reviewer approved or edited (the review bento), served for its question
and index version before any cache entry or generation, and never expiring with the cache's TTL.

They live beside the response cache, in its state database (`router.state`): the review bento pins,
every router replica reads. A question matches after whitespace is collapsed and case folded; the
index version must be the request's (None for a request without retrieval), so a pinned answer is
not served once the documents it was reviewed against have changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sqlalchemy import Column, Double, MetaData, Table, Text, text

from router.cache import digest
from router.state import Store, query, transaction

TABLES = MetaData()
Table(
    "pinned_answers",
    TABLES,
    Column("key", Text, primary_key=True),  # digest of the normalized question and the index version
    Column("question", Text, nullable=False),
    Column("index_version", Text),
    Column("payload", Text, nullable=False),  # JSON: text, citations, model, review_id
    Column("pinned_at", Double, nullable=False),
)


def normalized(question: str) -> str:
    return " ".join(question.split()).casefold()


def pin_key(question: str, index_version: str | None) -> str:
    return digest({"question": normalized(question), "index": index_version})


@dataclass(frozen=True)
class PinnedAnswer:
    text: str
    citations: list[dict]
    model: str
    review_id: str


class PinnedAnswers(Store):
    tables = TABLES

    def pin(self, question: str, index_version: str | None, answer: PinnedAnswer, now: float | None = None) -> None:
        """Pin `answer` (replacing an earlier pin of the same question and index version)."""
        payload = json.dumps(
            {
                "text": answer.text,
                "citations": answer.citations,
                "model": answer.model,
                "review_id": answer.review_id,
            }
        )
        key = pin_key(question, index_version)
        with transaction(self.engine, lock="pinned") as conn:
            conn.execute(text("DELETE FROM pinned_answers WHERE key = :key"), {"key": key})
            conn.execute(
                text(
                    "INSERT INTO pinned_answers (key, question, index_version, payload, pinned_at) "
                    "VALUES (:key, :question, :index_version, :payload, :now)"
                ),
                {
                    "key": key,
                    "question": question,
                    "index_version": index_version,
                    "payload": payload,
                    "now": time.time() if now is None else now,
                },
            )

    def find(self, question: str, index_version: str | None) -> PinnedAnswer | None:
        rows = query(
            self.engine, "SELECT payload FROM pinned_answers WHERE key = :key", key=pin_key(question, index_version)
        )
        return PinnedAnswer(**json.loads(rows[0][0])) if rows else None

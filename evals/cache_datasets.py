"""The cache eval's questions: how users ask the retrieval questions, and conversations.

Beside the retrieval set (`python_docs_retrieval.jsonl`, each question with its gold sections),
hand-written files, each row naming retrieval questions by id:

- `python_docs_paraphrases.jsonl` {id, of, question}: a retrieval question (`of`) in a user's
  words: short, lowercase, sometimes misspelt, other vocabulary. Its answer is `of`'s gold.
- `python_docs_near_misses.jsonl` {id, like, of, question}: worded like one question (`like`) but
  asking what another one answers (`of`): "change a file's extension" against "get a file's
  extension". Serving `like`'s answer to it is the false hit a semantic cache risks.
- `python_docs_sessions.jsonl` {id, turns: [{question, of}]}: conversations of 2-3 turns whose
  follow-ups only make sense after the turns before ("and recursively?"); several sessions
  open with the same question, and the same follow-up text means other things in other sessions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evals.retrieval import DATASETS_DIR, DatasetError, Gold, Question

PARAPHRASES = DATASETS_DIR / "python_docs_paraphrases.jsonl"
NEAR_MISSES = DATASETS_DIR / "python_docs_near_misses.jsonl"
SESSIONS = DATASETS_DIR / "python_docs_sessions.jsonl"

QUESTION, PARAPHRASE, NEAR_MISS = "question", "paraphrase", "near-miss"
OPENING, FOLLOW_UP = "opening", "follow-up"  # the turns of a session


@dataclass(frozen=True)
class Asked:
    """One question as a user types it, with the gold of the answer it needs (its `of` question's)."""

    id: str
    question: str
    gold: tuple[Gold, ...]
    of: str
    kind: str  # QUESTION | PARAPHRASE | NEAR_MISS | OPENING | FOLLOW_UP
    like: str = ""  # near-misses: the question it is worded like

    @property
    def sections(self) -> frozenset[tuple[str, str]]:
        return frozenset((g.doc_id, g.section) for g in self.gold)


@dataclass(frozen=True)
class Session:
    id: str
    turns: tuple[Asked, ...]


def rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) of each non-empty line."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc})") from exc
    return out


def question_of(by_id: dict[str, Question], path: Path, number: int, row: dict, field: str) -> Question:
    """The retrieval question a row names in `field`; a DatasetError naming the line when unknown."""
    try:
        return by_id[row[field]]
    except KeyError:
        raise DatasetError(f"{path}:{number}: {field} {row.get(field)!r} is not a retrieval question id") from None


def text_of(path: Path, number: int, row: dict) -> str:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DatasetError(f"{path}:{number}: empty or missing question")
    return question


def as_asked(question: Question) -> Asked:
    return Asked(question.id, question.question, question.gold, question.id, QUESTION)


def load_paraphrases(questions: list[Question], path: Path = PARAPHRASES) -> list[Asked]:
    by_id = {q.id: q for q in questions}
    out = []
    for number, row in rows(path):
        of = question_of(by_id, path, number, row, "of")
        out.append(Asked(str(row["id"]), text_of(path, number, row), of.gold, of.id, PARAPHRASE))
    return out


def load_near_misses(questions: list[Question], path: Path = NEAR_MISSES) -> list[Asked]:
    by_id = {q.id: q for q in questions}
    out = []
    for number, row in rows(path):
        of, like = (question_of(by_id, path, number, row, field) for field in ("of", "like"))
        if {(g.doc_id, g.section) for g in of.gold} & {(g.doc_id, g.section) for g in like.gold}:
            raise DatasetError(
                f"{path}:{number}: of {of.id!r} and like {like.id!r} share a gold section, "
                "so serving like's answer would not be wrong"
            )
        out.append(Asked(str(row["id"]), text_of(path, number, row), of.gold, of.id, NEAR_MISS, like.id))
    return out


def load_sessions(questions: list[Question], path: Path = SESSIONS) -> list[Session]:
    by_id = {q.id: q for q in questions}
    out = []
    for number, row in rows(path):
        turns = row.get("turns")
        if not isinstance(turns, list) or len(turns) < 2:
            raise DatasetError(f"{path}:{number}: a session needs at least two turns")
        out.append(
            Session(
                str(row["id"]),
                tuple(
                    Asked(
                        f"{row['id']}#{i}", text_of(path, number, turn), of.gold, of.id, FOLLOW_UP if i > 1 else OPENING
                    )
                    for i, turn in enumerate(turns, start=1)
                    for of in [question_of(by_id, path, number, turn, "of")]
                ),
            )
        )
    return out

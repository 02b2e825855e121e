"""The memory eval's data (evals/datasets/memory_users.jsonl): hand-written users, each with sessions days
apart (ISO timestamps) of what they told the assistant, and LoCoMo-like questions asked after them.

One line per user of a scope: {"user", "scope", "sessions": [{"at", "turns": [{"user", "assistant"}]}],
"questions": [{"id", "at", "type", "question", "expect", "forbid", ...}], "pii": [raw values]}.
Question types: `single` (a fact said once), `updated` (a fact that changed in a later session),
`docs` (a fact that picks the answer from the Python docs), `forgotten` (the user asked to forget it),
`other_user` (only another user, of this scope or another one with the same user name, said it).

Scoring rule (`correct`): every `expect` group has a term in the answer, and no `forbid` term is in it.
Terms are words or phrases matched case-insensitively on word boundaries; a trailing `*` matches any
ending ("illustrat*": illustrator). `stale` terms (the old value of an updated fact) are counted apart.

The held-out part: users whose hash with a fixed seed falls under HELDOUT_SHARE. Nothing (the prompt's
wording, the gate's thresholds) is tuned on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ragyard.contracts.memory import SCOPE_PATTERN

DATASET = Path(__file__).resolve().parent / "datasets" / "memory_users.jsonl"
TYPES = ("single", "updated", "docs", "forgotten", "other_user")
SPLIT_SEED = "ragyard-memory-eval-v1"
HELDOUT_SHARE = 0.3
MIN_SESSION_GAP_S = 86400  # sessions are days apart


class MemoryDatasetError(ValueError):
    """The dataset file breaks its format; the message names the line and the field."""


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


@dataclass(frozen=True)
class Session:
    at: float
    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class Question:
    id: str
    at: float
    type: str
    question: str
    expect: tuple[tuple[str, ...], ...]
    forbid: tuple[str, ...]
    stale: tuple[str, ...]
    docs: bool


@dataclass(frozen=True)
class EvalUser:
    scope: str
    user: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]
    pii: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.scope}/{self.user}"

    @property
    def heldout(self) -> bool:
        digest = hashlib.sha256(f"{SPLIT_SEED}:{self.key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < HELDOUT_SHARE


def timestamp(value: str, where: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError) as exc:
        raise MemoryDatasetError(f"{where}: {value!r} is not an ISO timestamp") from exc


def _question(row: dict, last_session: float, where: str) -> Question:
    qtype = row.get("type")
    if qtype not in TYPES:
        raise MemoryDatasetError(f"{where}.type: {qtype!r} is not one of {TYPES}")
    expect = tuple(tuple(group) for group in row.get("expect", []))
    forbid = tuple(row.get("forbid", []))
    if qtype in ("single", "updated", "docs") and not expect:
        raise MemoryDatasetError(f"{where}.expect: a {qtype} question needs the facts its answer must hold")
    if qtype in ("forgotten", "other_user") and not forbid:
        raise MemoryDatasetError(f"{where}.forbid: a {qtype} question needs the facts its answer must not hold")
    at = timestamp(str(row.get("at")), f"{where}.at")
    if at <= last_session:
        raise MemoryDatasetError(f"{where}.at: asked before the user's last session")
    if not str(row.get("question", "")).strip():
        raise MemoryDatasetError(f"{where}.question: empty")
    return Question(
        str(row["id"]),
        at,
        qtype,
        row["question"],
        expect,
        forbid,
        tuple(row.get("stale", [])),
        bool(row.get("docs", False)),
    )


def _user(row: dict, where: str) -> EvalUser:
    if not re.match(SCOPE_PATTERN, str(row.get("scope", ""))) or not str(row.get("user", "")).strip():
        raise MemoryDatasetError(f"{where}: needs a `scope` ({SCOPE_PATTERN}) and a `user`")
    sessions: list[Session] = []
    for i, session in enumerate(row.get("sessions", [])):
        at = timestamp(session.get("at"), f"{where}.sessions[{i}].at")
        if sessions and at - sessions[-1].at < MIN_SESSION_GAP_S:
            raise MemoryDatasetError(f"{where}.sessions[{i}].at: less than a day after the session before")
        turns = tuple(Turn(t["user"], t["assistant"]) for t in session.get("turns", []))
        if not turns:
            raise MemoryDatasetError(f"{where}.sessions[{i}].turns: empty")
        sessions.append(Session(at, turns))
    if len(sessions) < 2:
        raise MemoryDatasetError(f"{where}.sessions: a user needs at least two sessions")
    questions = tuple(
        _question(q, sessions[-1].at, f"{where}.questions[{i}]") for i, q in enumerate(row.get("questions", []))
    )
    if not questions:
        raise MemoryDatasetError(f"{where}.questions: empty")
    return EvalUser(row["scope"], row["user"], tuple(sessions), questions, tuple(row.get("pii", [])))


def load_users(path: Path = DATASET) -> list[EvalUser]:
    users: list[EvalUser] = []
    seen_users: set[str] = set()
    seen_questions: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{Path(path).name}:{number}"
        try:
            user = _user(json.loads(line), where)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise MemoryDatasetError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if user.key in seen_users:
            raise MemoryDatasetError(f"{where}: user {user.key} appears twice")
        if repeated := seen_questions & {q.id for q in user.questions}:
            raise MemoryDatasetError(f"{where}: question ids {sorted(repeated)} appear twice")
        seen_users.add(user.key)
        seen_questions |= {q.id for q in user.questions}
        users.append(user)
    return users


def _term(term: str) -> re.Pattern:
    stem = term.removesuffix("*")
    return re.compile(rf"(?<!\w){re.escape(stem.lower())}" + (r"\w*" if term.endswith("*") else r"(?!\w)"))


def mentions(answer: str, terms: tuple[str, ...] | list[str]) -> bool:
    text = answer.lower()
    return any(_term(term).search(text) for term in terms)


def correct(answer: str, question: Question) -> bool:
    return all(mentions(answer, group) for group in question.expect) and not mentions(answer, question.forbid)

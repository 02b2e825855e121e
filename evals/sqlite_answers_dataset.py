"""The SQLite answer set (evals/datasets/sqlite_docs_answers.jsonl): hand-written questions on SQLite's
documentation (Debian's `sqlite3-doc`, HTML), a corpus nothing in this repository was tuned on (issue 19).

One line per question: {"id": "sq-001", "question", "type": "lookup|howto|multipart", "facts": [["10",
"ten"], ["125"]], "pages": ["limits.html"], "note"?}. A fact is a list of acceptable surface forms, taken
from the listed pages (paths relative to the docs folder); 1-4 facts a question, a multipart question
has one per part. An answer holds a fact when it mentions one of its forms (`mentions` of the memory
eval: case-insensitive, on word boundaries, so "10" is not found in "1000"). Forms are literal: no
trailing `*` wildcard, as every form is also checked against the pages' text (the unit tests).

Split: a tuning half and a held-out half by evals/splits.py (seeded hash of the group, share 0.5),
grouped by page: questions that share a page are one group, so no page is in both halves. Whatever is
chosen with this set (a prompt, a threshold) is chosen on the tuning half, and reported on the other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.memory_dataset import mentions
from evals.splits import SPLIT_SEED, groups
from evals.splits import split as seeded_split
from ragyard.settings import Settings

DATASET = Path(__file__).resolve().parent / "datasets" / "sqlite_docs_answers.jsonl"
# Where Debian's sqlite3-doc (the Makefile's APT_PACKAGES) puts the HTML; `evals.sqlite_docs` overrides it.
SQLITE_DOCS = Path("/usr/share/doc/sqlite3")
TYPES = ("lookup", "howto", "multipart")
MAX_FACTS = 4
SEED = SPLIT_SEED  # fixed: the halves never change when questions on other pages are added
FIELDS = frozenset({"id", "question", "type", "facts", "pages", "note"})
_PAGE = re.compile(r"^(?:[\w-]+/)*[\w-]+\.html$")  # relative, no "..", no leading "/"


class SqliteDatasetError(ValueError):
    """The dataset file breaks its format; the message names the line and the field."""


@dataclass(frozen=True)
class SqliteQuestion:
    id: str
    question: str
    type: str
    facts: tuple[tuple[str, ...], ...]
    pages: tuple[str, ...]
    note: str = ""


def docs_folder(settings: Settings | None = None) -> Path:
    """The folder the `pages` are relative to: `evals.sqlite_docs` when set, else SQLITE_DOCS."""
    return Path(settings.evals.sqlite_docs) if settings is not None and settings.evals.sqlite_docs else SQLITE_DOCS


def _text(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SqliteDatasetError(f"{where}.{name}: must be a non-empty string")
    return value


def _form_ok(form: object) -> bool:
    return isinstance(form, str) and form == form.strip() != "" and not form.endswith("*")


def _question(row: object, where: str) -> SqliteQuestion:
    if not isinstance(row, dict):
        raise SqliteDatasetError(f"{where}: a line must be a JSON object")
    if unknown := set(row) - FIELDS:
        raise SqliteDatasetError(f"{where}: unknown field(s) {sorted(unknown)}; the fields are {sorted(FIELDS)}")
    qid, question = _text(row, "id", where), _text(row, "question", where)
    qtype = row.get("type")
    if qtype not in TYPES:
        raise SqliteDatasetError(f"{where}.type: {qtype!r} is not one of {TYPES}")
    facts = row.get("facts")
    if not isinstance(facts, list) or not 1 <= len(facts) <= MAX_FACTS:
        raise SqliteDatasetError(f"{where}.facts: 1 to {MAX_FACTS} facts, each a list of surface forms")
    for i, forms in enumerate(facts):
        if not isinstance(forms, list) or not forms or not all(_form_ok(form) for form in forms):
            raise SqliteDatasetError(f"{where}.facts[{i}]: non-empty strings, no outer spaces, no trailing '*'")
    if qtype == "multipart" and len(facts) < 2:
        raise SqliteDatasetError(f"{where}.facts: a multipart question needs a fact for each part (at least 2)")
    pages = row.get("pages")
    if not isinstance(pages, list) or not pages or not all(isinstance(p, str) and _PAGE.match(p) for p in pages):
        raise SqliteDatasetError(f"{where}.pages: a non-empty list of .html paths relative to the docs folder")
    note = row.get("note", "")
    if not isinstance(note, str):
        raise SqliteDatasetError(f"{where}.note: must be a string")
    return SqliteQuestion(qid, question, qtype, tuple(tuple(forms) for forms in facts), tuple(pages), note)


def load_questions(path: Path = DATASET) -> list[SqliteQuestion]:
    questions: list[SqliteQuestion] = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{Path(path).name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SqliteDatasetError(f"{where}: not JSON ({exc.msg})") from exc
        question = _question(row, where)
        if question.id in seen:
            raise SqliteDatasetError(f"{where}.id: {question.id!r} appears twice")
        seen.add(question.id)
        questions.append(question)
    return questions


def page_groups(questions: Sequence[SqliteQuestion]) -> dict[str, str]:
    """Each page's group key: pages named by one question share a group, directly or through others."""
    pages = {page for q in questions for page in q.pages}
    return groups(pages, [(q.pages[0], page) for q in questions for page in q.pages[1:]])


def split(questions: Sequence[SqliteQuestion], seed: int = SEED) -> tuple[list[SqliteQuestion], list[SqliteQuestion]]:
    """(tuning, held-out): by the seeded held-out draw of each question's page group."""
    group = page_groups(questions)
    return seeded_split(questions, lambda q: group[q.pages[0]], seed)


def score(answer: str, question: SqliteQuestion) -> tuple[int, bool]:
    """(facts found, all found): a fact is found when the answer mentions one of its forms."""
    text = " ".join(answer.split())  # a form spanning a line break still counts
    found = sum(mentions(text, forms) for forms in question.facts)
    return found, found == len(question.facts)

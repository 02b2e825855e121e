"""The SQLite answer set (evals/sqlite_answers_dataset.py): well formed and spread, split into halves with
no page in both, every fact stated on its pages, and the scorer counting facts as intended."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from evals.memory_dataset import mentions
from evals.sqlite_answers_dataset import (
    SQLITE_DOCS,
    SqliteDatasetError,
    SqliteQuestion,
    docs_folder,
    load_questions,
    score,
    split,
)
from ragyard.settings import EvalsSettings, Settings

needs_docs = pytest.mark.skipif(
    not (SQLITE_DOCS / "index.html").is_file(),
    reason=f"SQLite's documentation ({SQLITE_DOCS}) is not installed (Debian package sqlite3-doc, in the Makefile)",
)
# The mix: ~40% lookups, ~30% how-tos, ~30% two-part questions; each share within 10 points.
TARGET_MIX = {"lookup": 0.4, "howto": 0.3, "multipart": 0.3}
# A split by page draws each page group's half at random: with ~60 groups of 1-5 questions, each half
# holds 50% of the questions in expectation, and within 15 points of it for any reasonable seed.
HALF_TOLERANCE = 0.15


def test_the_set_loads_is_large_enough_and_spread():
    questions = load_questions()
    assert len(questions) >= 72
    assert len({page for q in questions for page in q.pages}) >= 25
    mix = Counter(q.type for q in questions)
    for qtype, share in TARGET_MIX.items():
        assert abs(mix[qtype] / len(questions) - share) <= 0.10, (qtype, mix)
    assert all(1 <= len(q.facts) <= 4 for q in questions)


def test_the_split_is_deterministic_about_half_and_half_and_keeps_each_page_on_one_side():
    questions = load_questions()
    tuning, held_out = split(questions)
    again_tuning, again_held_out = split(list(reversed(questions)))  # not the file's order
    assert {q.id for q in tuning} == {q.id for q in again_tuning}
    assert {q.id for q in held_out} == {q.id for q in again_held_out}
    assert len(tuning) + len(held_out) == len(questions)
    assert abs(len(held_out) / len(questions) - 0.5) <= HALF_TOLERANCE, (len(tuning), len(held_out))
    assert not {p for q in tuning for p in q.pages} & {p for q in held_out for p in q.pages}
    assert {q.type for q in tuning} == {q.type for q in held_out} == set(TARGET_MIX)


@needs_docs
def test_every_fact_is_stated_on_its_pages():
    from bs4 import BeautifulSoup

    texts: dict[str, str] = {}

    def text(page: str) -> str:
        if page not in texts:
            html = (SQLITE_DOCS / page).read_text(encoding="utf-8", errors="replace")
            texts[page] = " ".join(BeautifulSoup(html, "html.parser").get_text(" ").split())
        return texts[page]

    missing = []
    for q in load_questions():
        pages = " ".join(text(page) for page in q.pages)
        missing += [f"{q.id}: none of {forms} on {list(q.pages)}" for forms in q.facts if not mentions(pages, forms)]
    assert not missing, "\n".join(missing)


def test_the_scorer_counts_each_fact_once_on_word_boundaries():
    question = SqliteQuestion("t-1", "attach?", "multipart", (("10", "ten"), ("125",)), ("limits.html",))
    assert score("By default 10 databases [1]; recompiled, at most 125.", question) == (2, True)
    assert score("Ten (10) by default.", question) == (1, False)  # one fact, twice: counted once
    assert score("The default maximum is 1000, the ceiling 1250.", question) == (0, False)  # not "10", "125"
    assert score("", question) == (0, False)
    phrase = SqliteQuestion("t-2", "copy?", "howto", (("VACUUM INTO",),), ("lang_vacuum.html",))
    assert score("Run VACUUM\n  INTO 'copy.db'.", phrase) == (1, True)  # a line break inside the form


BASE = {"id": "a", "question": "q?", "type": "lookup", "facts": [["x"]], "pages": ["limits.html"]}


def _line(**changes: object) -> str:
    return json.dumps({**BASE, "id": "b", **changes})


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (_line(type="trivia"), r"^set.jsonl:2.type: 'trivia'"),
        (_line(type="multipart"), r"^set.jsonl:2.facts: a multipart question"),
        (_line(facts=[["x"], ["y", " z"]]), r"^set.jsonl:2.facts\[1\]"),
        (_line(facts=[["1"], ["2"], ["3"], ["4"], ["5"]]), r"^set.jsonl:2.facts: 1 to 4"),
        (_line(pages=["../secret.html"]), r"^set.jsonl:2.pages"),
        (_line(question=" "), r"^set.jsonl:2.question"),
        (_line(id="a"), r"^set.jsonl:2.id: 'a' appears twice"),
        (_line(fact=[["x"]]), r"^set.jsonl:2: unknown field\(s\) \['fact'\]"),
        ('{"id": "b", "question": "q?"', r"^set.jsonl:2: not JSON"),
    ],
)
def test_a_broken_line_is_refused_naming_its_line_and_field(tmp_path, line, error):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(BASE) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SqliteDatasetError, match=error):
        load_questions(path)


def test_the_docs_folder_comes_from_the_evals_settings_when_set():
    assert docs_folder() == SQLITE_DOCS
    assert docs_folder(Settings(evals=EvalsSettings(sqlite_docs="/srv/sqlite-doc"))) == Path("/srv/sqlite-doc")

"""The SQLite answer eval's pure parts (evals/sqlite_answers.py, evals/eval_index.py): citations, the scoring
of one answer, the metrics per half, the report's shape, the quick subset, its own index's settings, and
the ledger check that decides whether the ingestion runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evals import eval_index, sqlite_answers
from evals.eval_index import OwnIndex, pending_documents
from evals.generation import Generation
from evals.sqlite_answers import (
    AnswerRecord,
    AnswerRun,
    cited_passages,
    half_metrics,
    index_settings,
    model_metrics,
    quick_subset,
    report,
    score_answer,
)
from evals.sqlite_answers_dataset import TYPES, SqliteQuestion, load_questions, split
from pipelines.ledger import LedgerEntry
from pipelines.sources import configured_fingerprint, scan_sources
from ragyard.contracts.retriever import Hit
from ragyard.settings import EvalsSettings, Settings

ATTACH = SqliteQuestion(
    "t-1", "How many databases can I attach?", "multipart", (("10", "ten"), ("125",)), ("limits.html",)
)


def hit(page: str, text: str) -> Hit:
    return Hit(
        chunk_id=f"{page}#0",
        doc_id=f"sqlite-docs:{page}",
        source="sqlite-docs",
        title=page,
        section="",
        text=text,
        score=1.0,
    )


HITS = [
    hit("lang_attach.html", "ATTACH DATABASE adds a database file to the connection."),
    hit("limits.html", "The default maximum number of attached databases is 10; it can be raised to 125."),
]


def answer(text: str, seconds: float = 1.0) -> Generation:
    return Generation("smollm2-135m", text, 300, 20, seconds, 0.0, "llama-cpp-in-process")


def record(
    half: str, facts: int, found: int, *, unsupported=(), cited=(), gold=(), seconds=1.0, qid="q"
) -> AnswerRecord:
    return AnswerRecord(qid, half, "lookup", "m", "an answer", facts, found, list(unsupported), list(unsupported),
                        list(cited), list(gold), seconds)  # fmt: skip


def test_citations_are_the_answers_bracketed_numbers_within_the_passages():
    assert cited_passages("Ten [2]. Attach with ATTACH [1][2].", 4) == [1, 2]
    assert cited_passages("See [1, 3] and [3,4].", 4) == [1, 3, 4]
    assert cited_passages("Out of range [5], none [0], an index a[2x], nothing [].", 4) == []
    assert cited_passages("No markers at all.", 4) == []


def test_a_right_answer_holds_every_fact_is_grounded_and_cites_the_gold_page():
    scored = score_answer(ATTACH, "tuning", HITS, answer("By default 10 databases, at most 125 [2]."), False, 1200)
    assert (scored.facts, scored.facts_found, scored.all_facts) == (2, 2, True)
    assert scored.claims == ["10", "125"] and scored.grounded and scored.unsupported == []
    assert scored.gold_passages == [2] and scored.cited == [2] and scored.cites_gold and scored.retrieval_hit
    assert scored.retrieved == ["sqlite-docs:lang_attach.html", "sqlite-docs:limits.html"]


def test_a_wrong_number_is_unsupported_and_a_missing_second_fact_breaks_all_facts():
    scored = score_answer(
        ATTACH, "tuning", HITS, answer("You can attach 10 databases, or 1000 when compiled [1]."), False, 1200
    )
    assert scored.unsupported == ["1000"] and not scored.grounded
    assert (scored.facts_found, scored.all_facts) == (1, False)  # "125" is missing
    assert scored.cited == [1] and not scored.cites_gold  # cites a passage, not the gold page's


def test_only_the_part_of_a_passage_the_prompt_kept_supports_a_claim():
    text = "x" * 50 + " The limit can be raised to 125."
    cut = score_answer(ATTACH, "tuning", [hit("limits.html", text)], answer("At most 125 [1]."), False, 40)
    kept = score_answer(ATTACH, "tuning", [hit("limits.html", text)], answer("At most 125 [1]."), False, 1200)
    assert cut.unsupported == ["125"] and kept.unsupported == []


def test_half_metrics_from_hand_made_records():
    records = [
        record("held_out", 2, 2, cited=[1], gold=[1], seconds=1.0),
        record("held_out", 2, 1, unsupported=["1000"], cited=[2], gold=[1], seconds=3.0),
        record("held_out", 1, 0, unsupported=["a.b", "7"], seconds=8.0),
        record("held_out", 1, 1, cited=[1], gold=[1, 2], seconds=2.0),
    ]
    m = half_metrics(records)
    assert m["questions"] == 4
    assert m["fact_recall"] == pytest.approx(4 / 6)  # facts found over facts, not the mean per question
    assert m["all_facts_rate"] == pytest.approx(0.5)
    assert m["groundedness_rate"] == pytest.approx(0.5)
    assert m["unsupported_claims_mean"] == pytest.approx(0.75)
    assert m["citation_accuracy"] == pytest.approx(0.5)  # the second cites passage 2, not the gold 1
    assert m["cited_share"] == pytest.approx(0.75)
    assert m["retrieval_hit_at_k"] == pytest.approx(0.75)
    assert m["latency_p50_s"] == pytest.approx(2.5)
    for name in ("fact_recall", "all_facts_rate"):
        assert 0.0 <= m[f"{name}_low"] <= m[name] <= m[f"{name}_high"] <= 1.0
        assert m[f"{name}_low"] < m[f"{name}_high"]  # the answers differ: the interval has width
    assert half_metrics([]) == {}


def test_model_metrics_keep_the_halves_apart():
    records = [record("held_out", 1, 1), record("tuning", 1, 0), record("tuning", 1, 0)]
    m = model_metrics(records)
    assert m["held_out_fact_recall"] == 1.0 and m["tuning_fact_recall"] == 0.0
    assert m["held_out_questions"] == 1 and m["tuning_questions"] == 2


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", evals=EvalsSettings(sqlite_docs=str(tmp_path / "docs")))


def test_the_index_is_the_docs_folder_in_a_home_and_collection_of_its_own(settings, tmp_path):
    own = index_settings(settings)
    assert own.home == settings.home / "evals" / "sqlite-docs"
    assert own.ledger_path == settings.home / "evals" / "sqlite-docs" / "ingest" / "ledger.sqlite3"
    assert own.milvus.collection == f"{settings.milvus.collection}_sqlite_docs" != settings.milvus.collection
    [source] = own.ingest.sources
    assert (source.name, source.path, source.include) == ("sqlite-docs", tmp_path / "docs", ["*.html"])
    assert own.chunker == settings.chunker and own.embedder.model == settings.embedder.model
    assert own.embedder.models_folder(own.home) == settings.embedder.models_folder(settings.home)  # exports shared


def test_the_report_states_the_method_and_puts_the_held_out_half_first(settings):
    questions = load_questions()
    tuning, held_out = split(questions)
    run = AnswerRun(
        {"held_out": held_out[:2], "tuning": tuning[:1]},
        ["m", "n"],
        [
            record("held_out", 2, 1, qid=held_out[0].id),
            record("held_out", 1, 1, qid=held_out[1].id),
            record("tuning", 1, 0, qid=tuning[0].id),
        ],  # model "n" answered nothing: its rows say so
        OwnIndex(index_settings(settings), "abc123", 60, 4000, 2, True, 9.0),
        "ragyard-rag@builtin",
        "llama-cpp-in-process",
    )
    result = report(run, settings, quick=False)
    assert result.experiment == "ragyard-sqlite-answers" and [r.name for r in result.runs] == [
        "sqlite-answers-m",
        "sqlite-answers-n",
    ]
    first = result.runs[0]
    assert first.params["collection"].endswith("_sqlite_docs") and first.params["index_version"] == "abc123"
    assert (
        first.params["context_chunks"] == settings.router.top_k
        and first.params["max_tokens"] == sqlite_answers.MAX_TOKENS
    )
    assert first.metrics["held_out_fact_recall"] == pytest.approx(2 / 3) and first.metrics["tuning_fact_recall"] == 0.0
    assert [row["id"] for row in first.tables["per_question"]] == [held_out[0].id, held_out[1].id, tuning[0].id]
    assert {"all_facts", "grounded", "cites_gold", "retrieval_hit"} <= set(first.tables["per_question"][0])
    text = result.summary_markdown
    assert text.index("**Held-out half** (2 questions)") < text.index("**Tuning half** (1 questions)")
    assert "Nothing was tuned on the held-out half" in text and "sqlite_docs_answers.jsonl" in text
    assert f"top {settings.router.top_k} chunks" in text and f"at most {sqlite_answers.MAX_TOKENS} tokens" in text
    assert "from m, n" in text and "| m | 66.7% [" in text and "| n | no questions |" in text


def test_quick_takes_one_question_of_each_type_from_each_half_and_the_first_model(settings, monkeypatch):
    seen = {}

    def fake_collect(settings, halves, models):
        seen.update(halves=halves, models=models)
        raise RuntimeError("stop")

    monkeypatch.setattr(sqlite_answers, "collect", fake_collect)
    with pytest.raises(RuntimeError, match="stop"):
        sqlite_answers.evaluate(settings, quick=True)
    assert seen["models"] == ["smollm2-135m"]
    tuning, held_out = split(load_questions())
    assert seen["halves"] == quick_subset(tuning, held_out)
    for half, questions in (("tuning", tuning), ("held_out", held_out)):
        assert [q.type for q in seen["halves"][half]] == list(TYPES)
        assert {q.id for q in seen["halves"][half]} <= {q.id for q in questions}
    with pytest.raises(RuntimeError, match="stop"):
        sqlite_answers.evaluate(settings, question_ids=[held_out[0].id, tuning[0].id])
    assert seen["models"] == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert seen["halves"] == {"held_out": [held_out[0]], "tuning": [tuning[0]]}


class _Client:
    def __init__(self, exists: bool):
        self.exists = exists

    def has_collection(self, name: str) -> bool:
        return self.exists


def test_the_ledger_decides_whether_the_ingestion_runs(settings, tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.html", "b.html"):
        (docs / name).write_text(f"<h1>{name}</h1><p>text</p>")
    (docs / "skip.css").write_text("body {}")
    own = index_settings(settings)
    monkeypatch.setattr(eval_index.col, "connect", lambda *args: _Client(exists=False))
    assert pending_documents(own) is None  # no collection: everything is to index
    monkeypatch.setattr(eval_index.col, "connect", lambda *args: _Client(exists=True))
    assert pending_documents(own) == 2
    from pipelines.ledger import Ledger

    fingerprint = configured_fingerprint(own)
    Ledger(own.ledger_path).record(
        LedgerEntry(f.doc_id, f.source, f.path, "hash", fingerprint, 3, f.size_bytes, f.mtime_ns)
        for f in scan_sources(own.ingest.sources).files
    )
    assert pending_documents(own) == 0
    os.utime(docs / "a.html", ns=(1, 1))  # touched: the ingestion re-reads it
    (docs / "b.html").unlink()  # gone: the ingestion deletes its chunks
    assert pending_documents(own) == 2


def test_the_default_models_are_the_three_catalog_models():
    assert EvalsSettings().sqlite_models == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert {m.name for m in Settings().llm.models} >= set(EvalsSettings().sqlite_models)

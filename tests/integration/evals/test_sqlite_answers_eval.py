"""The SQLite answer eval on a tiny subset: two pages of SQLite's documentation copied into a folder as the
docs, three questions (two tuning, one held out), SmolLM2-135M in-process (llama.cpp), its own index on a
real milvus-lite built by the ingestion, and built again only when a page changes."""

from __future__ import annotations

import shutil

import pytest

from evals.eval_index import ensure_index
from evals.generation import AnswerCache
from evals.sqlite_answers import evaluate, index_settings
from evals.sqlite_answers_dataset import SQLITE_DOCS
from ragyard.settings import MlflowSettings
from tests.support.network import free_port

PAGES = ("limits.html", "autoinc.html")
QUESTIONS = ("sq-002", "sq-004", "sq-018")  # limits.html is in the tuning half, autoinc.html held out

needs_docs = pytest.mark.skipif(
    not all((SQLITE_DOCS / page).is_file() for page in PAGES),
    reason=f"SQLite's documentation ({SQLITE_DOCS}) is not installed (Debian package sqlite3-doc)",
)


@needs_docs
def test_three_questions_answered_by_smollm2_on_the_eval_s_own_index(settings, tmp_path, smollm2_path):
    docs = tmp_path / "sqlite-docs"
    docs.mkdir()
    for page in PAGES:
        shutil.copy(SQLITE_DOCS / page, docs / page)
    settings = settings.model_copy(
        update={
            "evals": settings.evals.model_copy(update={"sqlite_docs": str(docs), "sqlite_models": ["smollm2-135m"]}),
            # Nothing listens there: in-process generation (not a running LLM bento), the built-in prompt.
            "llm": settings.llm.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"}),
            "mlflow": MlflowSettings(url=f"http://127.0.0.1:{free_port()}"),
        }
    )

    report = evaluate(settings, question_ids=QUESTIONS)
    [first] = report.runs
    assert first.name == "sqlite-answers-smollm2-135m"
    assert (
        first.params["generation_backend"] == "llama-cpp-in-process" and first.params["prompt"] == "ragyard-rag@builtin"
    )
    assert (first.params["held_out_questions"], first.params["tuning_questions"]) == (1, 2)
    assert first.params["index_documents"] == 2 and first.params["index_chunks"] > 2
    assert first.params["collection"] == f"{settings.milvus.collection}_sqlite_docs"
    rows = first.tables["per_question"]
    assert [r["id"] for r in rows] == ["sq-018", "sq-002", "sq-004"]  # held out first
    assert all(r["answer"].strip() and len(r["retrieved"]) == settings.router.top_k for r in rows)
    # Two pages: each question's own page is among its passages.
    assert first.metrics["held_out_retrieval_hit_at_k"] == first.metrics["tuning_retrieval_hit_at_k"] == 1.0
    for name in ("fact_recall", "all_facts_rate", "groundedness_rate", "citation_accuracy"):
        for half in ("held_out", "tuning"):
            assert 0.0 <= first.metrics[f"{half}_{name}"] <= 1.0, (half, name)
    assert report.summary_markdown.index("**Held-out half**") < report.summary_markdown.index("**Tuning half**")
    assert len(AnswerCache.for_settings(settings)) == 3  # cached under RAGYARD_HOME

    # The index is rebuilt only when its ledger says a page changed.
    own = index_settings(settings)
    unchanged = ensure_index(own)
    assert not unchanged.rebuilt and unchanged.version == first.params["index_version"]
    with (docs / "autoinc.html").open("a", encoding="utf-8") as page:
        page.write("<p>An added paragraph about AUTOINCREMENT.</p>\n")
    changed = ensure_index(own)
    assert changed.rebuilt and changed.version != unchanged.version and changed.documents == 2

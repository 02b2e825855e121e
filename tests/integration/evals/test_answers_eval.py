"""The answer eval: the shipped QA set against the real chunker, and a quick run with SmolLM2 on a
real index of one Python-docs page (real milvus-lite, real embedder model, llama.cpp in-process)."""

from __future__ import annotations

import shutil

import pytest

from evals.answers import QUICK_QUESTIONS, collect_answers, evaluate, load_qa_dataset
from evals.generation import AnswerCache
from ragyard.settings import (
    PYTHON_DOCS,
    IngestSettings,
    MlflowSettings,
    SourceSettings,
)
from tests.support.ingest import run_ingest

needs_docs = pytest.mark.skipif(
    not PYTHON_DOCS.is_dir(),
    reason=f"the Python 3.11 docs ({PYTHON_DOCS}) are not installed (Debian package python3.11-doc)",
)


@needs_docs
def test_quick_answer_eval_with_smollm2(settings, corpus, mlflow_server, smollm2_path):
    # The quick questions are about os.path: index that page as the "python-docs" source.
    (corpus / "library").mkdir()
    shutil.copy(PYTHON_DOCS / "library" / "os.path.rst.txt", corpus / "library" / "os.path.rst.txt")
    settings = settings.model_copy(
        update={
            "ingest": IngestSettings(sources=[SourceSettings(name="python-docs", path=corpus)], write_batch_rows=64),
            "mlflow": MlflowSettings(url=mlflow_server),  # no prompt registered there: the built-in one
        }
    )
    run_ingest(settings)

    report = evaluate(settings, quick=True)
    assert report.experiment == "ragyard-answers" and len(report.runs) == 1
    run = report.runs[0]
    assert run.params["model"] == "smollm2-135m" and run.params["dataset_size"] == QUICK_QUESTIONS
    assert run.params["generation_backend"] == "llama-cpp-in-process" and run.params["prompt_version"] == "builtin"
    rows = run.tables["per_question"]
    assert [r["id"] for r in rows] == [item.id for item in load_qa_dataset()[:QUICK_QUESTIONS]]
    assert all(r["answer"].strip() and r["completion_tokens"] > 0 and r["cost"] > 0 for r in rows)
    for name in ("token_f1", "groundedness", "citation_accuracy", "cited_share"):
        assert 0.0 <= run.metrics[name] <= 1.0, name
    assert run.metrics["token_f1"] > 0.0  # some answer words ("os", "path") meet the reference
    assert run.metrics["latency_p50_s"] > 0 and run.metrics["cost_per_answer"] > 0
    assert "| smollm2-135m |" in report.summary_markdown

    # Every answer is cached under RAGYARD_HOME; a second run generates nothing.
    assert len(AnswerCache.for_settings(settings)) == QUICK_QUESTIONS
    again = collect_answers(settings, quick=True)
    assert all(r.cached for r in again.records)
    assert [r.answer for r in again.records] == [r["answer"] for r in rows]


def test_measured_prices_charge_prompt_tokens_less_than_generated_ones(settings, smollm2_path):
    from evals.generation import LlamaCppGenerator, measured_prices

    settings.llm.models = [m.model_copy(update={"n_threads": 1}) for m in settings.llm.models]
    long_prompt = [{"role": "user", "content": "Summarize: " + "Paths join with os.path.join. " * 60}]
    prices = measured_prices(LlamaCppGenerator(settings), settings, ["smollm2-135m"], long_prompt)
    input_per_1k, output_per_1k = prices["smollm2-135m"]
    # Prefill runs many tokens per step, decoding one: a prompt token is cheaper (~3x for SmolLM2 on
    # a quiet machine here, ~1.4x with other work on both cores).
    assert 0 < input_per_1k < output_per_1k
    priced = settings.llm.models[0].model_copy(update={"name": "priced", "input_per_1k": 0.5, "output_per_1k": 1.5})
    settings.llm.models.append(priced)
    assert measured_prices(LlamaCppGenerator(settings), settings, ["priced"], long_prompt) == {"priced": (0.5, 1.5)}

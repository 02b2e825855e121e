"""The answer eval: the shipped QA set against the real chunker, and a quick run with SmolLM2 on a
real index of one Python-docs page (real milvus-lite, real embedder model, llama.cpp in-process)."""

from __future__ import annotations

import shutil

import pytest

from evals.answers import QUICK_QUESTIONS, collect_answers, evaluate, load_qa_dataset
from evals.generation import AnswerCache
from evals.retrieval import DatasetError
from ragyard.settings import PYTHON_DOCS, ChunkerSettings, IngestSettings, MlflowSettings, SourceSettings
from tests.conftest import run_ingest

needs_docs = pytest.mark.skipif(not PYTHON_DOCS.is_dir(), reason=f"the Python 3.11 docs ({PYTHON_DOCS}) are not "
                                                                  "installed (Debian package python3.11-doc)")


def test_qa_dataset_is_well_formed_and_spread():
    items = load_qa_dataset()
    assert len(items) >= 60
    assert all(len(item.reference.split()) >= 3 for item in items)
    folders = {g.doc_id.split(":", 1)[1].split("/")[0] for item in items for g in item.gold}
    assert {"library", "tutorial", "faq", "reference", "howto"} <= folders


def test_qa_dataset_refuses_a_line_without_an_answer(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "x", "question": "q?", "gold": [{"doc_id": "d", "section": "s"}]}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="qa.jsonl:1: no reference `answer`"):
        load_qa_dataset(path)


@needs_docs
def test_every_gold_section_of_the_qa_set_is_a_chunk_section_of_its_document():
    from pipelines.chunking import chunk_document
    from pipelines.sources import SourceFile, parse_document, read_bytes

    sections: dict[str, list[str]] = {}
    missing = []
    for item in load_qa_dataset():
        for gold in item.gold:
            if gold.doc_id not in sections:
                relative = gold.doc_id.split(":", 1)[1]
                stat = (PYTHON_DOCS / relative).stat()
                file = SourceFile("python-docs", relative, PYTHON_DOCS / relative, stat.st_size, stat.st_mtime_ns)
                document = parse_document(file, read_bytes(file, 8_000_000), "-")
                sections[gold.doc_id] = [c.section for c in chunk_document(document, ChunkerSettings())]
            if not any(gold.section in s for s in sections[gold.doc_id]):
                missing.append(f"{item.id}: no chunk of {gold.doc_id} has a section containing {gold.section!r}")
    assert not missing, "\n".join(missing)


@needs_docs
def test_quick_answer_eval_with_smollm2(settings, corpus, mlflow_server, smollm2_path):
    # The quick questions are about os.path: index that page as the "python-docs" source.
    (corpus / "library").mkdir()
    shutil.copy(PYTHON_DOCS / "library" / "os.path.rst.txt", corpus / "library" / "os.path.rst.txt")
    settings = settings.model_copy(update={
        "ingest": IngestSettings(sources=[SourceSettings(name="python-docs", path=corpus)], write_batch_rows=64),
        "mlflow": MlflowSettings(url=mlflow_server),  # no prompt registered there: the built-in one
    })
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

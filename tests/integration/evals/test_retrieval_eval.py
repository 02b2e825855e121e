"""The retrieval eval end to end through the harness: a real index, a real MLflow server (its metrics
and dataset: tests/unit)."""

import json
import uuid
from pathlib import Path

import pytest

from evals.harness import index_version, run_eval
from evals.retrieval import METRIC_NAMES, MODES
from tests.support.corpus import write_corpus
from tests.support.ingest import run_ingest

TINY_DATASET = [
    {
        "id": "generators",
        "question": "how do generators work in everyday programs",
        "gold": [{"doc_id": "docs:reference/generators.rst", "section": "Generators"}],
    },
    {
        "id": "decorators-example",
        "question": "return decorators built from value example_1",
        "gold": [{"doc_id": "docs:guide/decorators.rst", "section": "Decorators"}],
    },
    {
        "id": "context-managers",
        "question": "context managers and the len builtin",
        "gold": [{"doc_id": "docs:reference/context_managers.rst", "section": "Context Managers"}],
    },
    {
        "id": "release-notes",
        "question": "which parser bug about dictionaries was fixed in this release",
        "gold": [{"doc_id": "docs:notes.md", "section": "Release notes"}],
    },
]


def test_retrieval_eval_end_to_end_logs_one_run_per_mode(settings, corpus, mlflow_server, tmp_path, capsys):
    from mlflow import MlflowClient

    write_corpus(corpus)
    run_ingest(settings)
    experiment = f"retrieval-{uuid.uuid4().hex[:8]}"
    settings.mlflow.url = mlflow_server
    settings.evals.experiments = {"retrieval": experiment}
    dataset = tmp_path / "tiny_retrieval.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in TINY_DATASET), encoding="utf-8")
    docs = tmp_path / "evals.md"

    result = run_eval("retrieval", settings, dataset=dataset, docs=docs)
    print(result.report.summary_markdown)
    assert "| bm25 |" in capsys.readouterr().out
    assert [r.params["mode"] for r in result.report.runs] == list(MODES) and len(result.run_ids) == 3
    assert result.experiment == experiment

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted(result.run_ids)
    by_mode = {run.data.params["mode"]: run for run in runs}
    assert set(by_mode) == set(MODES)
    version, documents, chunks = index_version(settings)
    assert version != "unknown" and documents == 7 and chunks > 7
    for mode, run in by_mode.items():
        params = run.data.params
        assert run.info.status == "FINISHED" and run.data.tags["ragyard.eval"] == "retrieval"
        assert params["fusion"] == "rrf" and params["rrf_k"] == "60" and params["dense_weight"] == "0.5"
        assert params["top_k"] == "10" and params["embedder_model"] == "all-MiniLM-L6-v2"
        assert params["chunker_max_chars"] == "600" and params["chunker_overlap_chars"] == "100"
        assert params["chunker_min_chars"] == "150"
        assert params["collection"] == settings.milvus.collection
        assert params["index_version"] == version and params["index_chunks"] == str(chunks)
        assert params["dataset"] == "tiny_retrieval" and params["dataset_size"] == "4"
        for name in METRIC_NAMES:
            assert 0.0 <= run.data.metrics[name] <= 1.0, (mode, name)
        assert run.data.metrics["recall_at_5"] <= run.data.metrics["recall_at_10"]
        logged = dict(zip(METRIC_NAMES, (run.data.metrics[n] for n in METRIC_NAMES), strict=True))
        expected = next(r.metrics for r in result.report.runs if r.params["mode"] == mode)
        assert logged == pytest.approx({n: expected[n] for n in METRIC_NAMES})
        artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
        assert {"per_question.json", "per_question.csv"} <= set(artifacts)
    assert by_mode["bm25"].data.metrics["recall_at_10"] > 0
    downloaded = client.download_artifacts(by_mode["hybrid"].info.run_id, "per_question.json", str(tmp_path))
    rows = json.loads(Path(downloaded).read_text())
    assert [row["id"] for row in rows] == [q["id"] for q in TINY_DATASET]
    section = docs.read_text()
    assert f"## Retrieval (experiment `{experiment}`)" in section and "cores" in section
    assert f"version `{version}`" in section and "| hybrid |" in section

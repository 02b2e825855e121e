"""The retrieval eval as a Dagster asset on a real index and MLflow server, and its regression gate."""

import importlib
import json
import uuid

import dagster as dg
import pytest

from evals.assets import (
    GATE_CHECK,
    LOGGED_CHECK,
    eval_run_key,
    make_eval_asset,
)
from evals.baseline import BASELINE_TAG, check_regression
from pipelines.materialize import materialize_ingest
from ragyard.cli import main
from ragyard.settings import EvalsSettings, Settings, settings_env
from ragyard.tracking import mlflow_client
from tests.support.corpus import write_corpus
from tests.support.ingest import run_ingest

# Questions phrased without the documents' words: dense search finds them, BM25 mostly does not.
PARAPHRASED = [
    ("generators", "functions that yield values lazily one at a time", "docs:reference/generators.rst", "Generators"),
    ("decorators", "wrapping a callable with the @ syntax to add behaviour", "docs:guide/decorators.rst", "Decorators"),
    (
        "context",
        "the with statement that closes a file automatically",
        "docs:reference/context_managers.rst",
        "Context Managers",
    ),
    ("dicts", "key to value mappings and hash tables", "docs:guide/dictionaries.rst", "Dictionaries"),
    ("lists", "ordered mutable arrays you can append items to", "docs:reference/lists.rst", "Lists"),
    ("exceptions", "catching errors with try and except blocks", "docs:guide/exceptions.rst", "Exceptions"),
    ("notes", "which parser bug was fixed in this release", "docs:notes.md", "Release notes"),
]


def materialize_eval(settings: Settings) -> dg.ExecuteInProcessResult:
    return dg.materialize([make_eval_asset("retrieval", settings)])


def check(result: dg.ExecuteInProcessResult, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def degraded(settings: Settings) -> Settings:
    """Hybrid search with the dense side weighted to zero: BM25's ranking alone."""
    worse = settings.model_copy(deep=True)
    worse.retriever.fusion, worse.retriever.dense_weight = "weighted", 0.0
    return worse


@pytest.fixture
def gated_settings(settings, corpus, mlflow_server, tmp_path) -> Settings:
    write_corpus(corpus)
    run_ingest(settings)
    dataset = tmp_path / "paraphrased.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": i, "question": q, "gold": [{"doc_id": d, "section": s}]}) + "\n"
            for i, q, d, s in PARAPHRASED
        )
    )
    settings.mlflow.url = mlflow_server
    settings.evals = EvalsSettings(
        asset_quick=False,
        retrieval_dataset=str(dataset),
        regression_margin=0.05,
        experiments={"retrieval": f"gate-{uuid.uuid4().hex[:8]}"},
    )
    return settings


def test_the_gate_passes_on_the_normal_setting_and_trips_on_a_degraded_one(gated_settings, capsys, monkeypatch):
    settings = gated_settings
    client = mlflow_client(settings.mlflow.url)

    # 1. the first run: no baseline yet, it becomes the baseline
    first = materialize_eval(settings)
    assert first.success
    gate = check(first, GATE_CHECK)
    assert gate.passed and "became the baseline" in gate.metadata["message"].value
    assert check(first, LOGGED_CHECK).passed
    metadata = first.get_asset_materialization_events()[0].materialization.metadata
    baseline_ndcg = metadata["paraphrased-hybrid/ndcg_at_10"].value
    assert baseline_ndcg > 0.6
    assert metadata["paraphrased-hybrid/mlflow_run"].value.startswith(settings.mlflow.url + "/#/experiments/")
    baseline_run = gate.metadata["run_id"].value
    assert client.get_run(baseline_run).data.tags[BASELINE_TAG] == "true"

    # 2. the same settings again: within the margin of the baseline
    second = check(materialize_eval(settings), GATE_CHECK)
    assert second.passed and second.metadata["baseline_run_id"].value == baseline_run
    assert second.metadata["baseline"].value == pytest.approx(baseline_ndcg)

    # 3. a degraded retriever setting: nDCG@10 drops by more than the margin, the check fails
    worse = materialize_eval(degraded(settings))
    tripped = check(worse, GATE_CHECK)
    assert not tripped.passed
    assert tripped.metadata["current"].value < baseline_ndcg - settings.evals.regression_margin
    assert tripped.metadata["delta"].value < -0.05 and "more than the margin" in tripped.description
    assert check(worse, LOGGED_CHECK).passed  # the eval itself ran and was logged fine
    degraded_run = tripped.metadata["run_id"].value

    # 4. the CLI moves the baseline to the degraded run: now the degraded setting passes
    for key, value in {
        "RAGYARD_MLFLOW__URL": settings.mlflow.url,
        "RAGYARD_EVALS__EXPERIMENTS": json.dumps(settings.evals.experiments),
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["eval", "baseline", "set", "--run-id", degraded_run]) == 0
    assert f"baseline: run {degraded_run} (was {baseline_run})" in capsys.readouterr().out
    assert BASELINE_TAG not in client.get_run(baseline_run).data.tags
    assert check_regression(client, degraded_run, settings).passed


def test_the_sensor_requests_an_eval_run_keyed_by_index_version_and_settings(settings, corpus, monkeypatch):
    write_corpus(corpus, count=2)
    before = eval_run_key(settings)
    assert eval_run_key(settings.model_copy(deep=True)) == before
    assert eval_run_key(degraded(settings)) != before

    instance = dg.DagsterInstance.ephemeral()
    materialize_ingest(settings, instance=instance)
    after = eval_run_key(settings)
    assert after != before  # the index version moved

    for key, value in settings_env(settings).items():  # the code location reads them as Dagster's process does
        monkeypatch.setenv(key, value)
    import evals.definitions  # the evals' code location `make run` serves, loaded with these settings

    defs = importlib.reload(evals.definitions).defs
    sensor = defs.get_sensor_def("evals_after_index")
    assert sensor.job_name == "evals"
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        (request,) = sensor.evaluate_tick(context).run_requests
    assert request.run_key == after

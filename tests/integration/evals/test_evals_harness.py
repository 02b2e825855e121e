"""The eval harness with a real MLflow server: what a run logs, the docs section, the CLI (its registry and
tables by themselves: tests/unit)."""

import json
import uuid

import pytest
from mlflow import MlflowClient

from evals.harness import run_eval
from ragyard.cli import main
from ragyard.settings import MlflowSettings, Settings
from tests.support.toy_evals import install_toy_evals, toy_evaluate


@pytest.fixture
def registry(monkeypatch):
    install_toy_evals(monkeypatch)


@pytest.fixture
def eval_settings(tmp_path, mlflow_server) -> Settings:
    return Settings(home=tmp_path / "home", mlflow=MlflowSettings(url=mlflow_server, run_local=False))


def test_a_run_logs_params_metrics_tags_and_tables_to_mlflow(registry, eval_settings, tmp_path):
    experiment = f"toy-{uuid.uuid4().hex[:8]}"
    eval_settings.evals.experiments = {"toy": experiment}
    docs = tmp_path / "evals.md"
    result = run_eval("toy", eval_settings, quick=True, docs=docs)
    assert result.experiment == experiment and len(result.run_ids) == 2

    client = MlflowClient(tracking_uri=eval_settings.mlflow.url)
    a, b = (client.get_run(run_id) for run_id in result.run_ids)
    assert a.info.run_name == "toy-a" and a.info.status == "FINISHED"
    assert client.get_experiment(a.info.experiment_id).name == experiment
    assert a.data.metrics == {"accuracy": 0.75, "latency_ms": 12.5}
    assert a.data.params["variant"] == "a"
    assert a.data.params["embedder_model"] == "my-own-model"  # the eval's own param wins
    assert b.data.params["embedder_model"] == "all-MiniLM-L6-v2"  # the common one otherwise
    assert b.data.params["index_version"] == "unknown"  # no ledger under this RAGYARD_HOME
    for key in ("collection", "chunker_max_chars", "fusion", "rrf_k", "prompt_name"):
        assert key in b.data.params
    assert a.data.tags["ragyard.eval"] == "toy" and a.data.tags["ragyard.quick"] == "true"
    assert a.data.tags["ragyard.eval_batch"] == b.data.tags["ragyard.eval_batch"]
    assert "cores" in a.data.tags["ragyard.machine"]

    assert {f.path for f in client.list_artifacts(a.info.run_id)} == {"per_question.json", "per_question.csv"}
    assert client.list_artifacts(b.info.run_id) == []
    rows = json.loads(open(client.download_artifacts(a.info.run_id, "per_question.json", str(tmp_path))).read())
    assert rows == toy_evaluate(None, quick=True).runs[0].tables["per_question"]

    text = docs.read_text()
    assert text.startswith("# Evaluation results")
    assert f"## Toy (experiment `{experiment}`)" in text and "(n=2)" in text
    assert "Command: `ragyard eval run toy --quick`" in text and "_Measured " in text


def test_the_docs_section_of_an_eval_is_replaced_and_the_others_kept(registry, tmp_path, eval_settings):
    docs = tmp_path / "evals.md"
    docs.write_text("# Evaluation results\n\n## Safety (experiment `s`)\n\nkept\n")
    run_eval("toy", eval_settings, quick=True, log_to_mlflow=False, docs=docs)
    run_eval("toy", eval_settings, quick=False, log_to_mlflow=False, docs=docs)
    text = docs.read_text()
    assert text.count("## Toy (experiment") == 1 and "(n=3)" in text and "(n=2)" not in text
    assert "## Safety (experiment `s`)\n\nkept" in text


def test_cli_all_runs_what_is_present_and_reports_failures(registry, eval_settings, monkeypatch, capsys):
    for key, value in {
        "RAGYARD_HOME": str(eval_settings.home),
        "RAGYARD_MLFLOW__URL": eval_settings.mlflow.url,
        "RAGYARD_EVALS__EXPERIMENTS": json.dumps({"toy": f"toy-{uuid.uuid4().hex[:8]}"}),
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["eval", "run", "all", "--quick"]) == 2  # one eval failed
    out, err = capsys.readouterr()
    assert "evals present: toy, failing; not in this checkout: ghost" in out
    assert "## toy" in out and "MLflow runs in experiment 'toy-" in out
    assert "error: eval failing: ConnectionError: the llm bento" in err

    assert main(["eval", "run", "toy", "--quick", "--no-mlflow"]) == 0
    assert main(["eval", "run", "ghost"]) == 2
    assert "module evals.no_such_eval is not in this checkout" in capsys.readouterr().err

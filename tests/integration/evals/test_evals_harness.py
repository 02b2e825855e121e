"""The eval harness: lazy registry, what a run logs to a real MLflow server, the docs section, the CLI."""

import csv
import importlib.machinery
import io
import json
import sys
import types
import uuid

import pytest
from mlflow import MlflowClient

from evals import harness
from evals.harness import EvalUnavailable, available_evals, load_eval, run_eval, table_csv
from evals.harness_types import EvalReport, EvalRun
from ragyard.cli import main
from ragyard.settings import MlflowSettings, Settings

TOY = "tests.toy_eval_module"


def toy_evaluate(settings, quick=False):
    """A small eval whose results are known, to test what the harness does with them."""
    size = 2 if quick else 3
    rows = [{"id": f"q{i}", "score": i / 2, "hits": [{"doc": "a"}, {"doc": "b"}]} for i in range(size)]
    runs = [
        EvalRun("toy-a", {"variant": "a", "embedder_model": "my-own-model"}, {"accuracy": 0.75, "latency_ms": 12.5},
                {"per_question": rows}),
        EvalRun("toy-b", {"variant": "b"}, {"accuracy": 0.5, "latency_ms": 20.0}),
    ]
    return EvalReport("toy-experiment", runs, f"| variant | accuracy |\n| a | 0.75 |\n| b | 0.5 | (n={size})")


def failing_evaluate(settings, quick=False):
    raise ConnectionError("the llm bento at http://127.0.0.1:3003 is not running")


@pytest.fixture
def registry(monkeypatch):
    """The harness registry with a toy eval, a failing one and one whose module is not in the checkout."""
    for name, evaluate in ((TOY, toy_evaluate), (TOY + "_failing", failing_evaluate)):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
        module.evaluate = evaluate
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(harness, "EVALS", {"toy": TOY, "failing": TOY + "_failing", "ghost": "evals.no_such_eval"})


@pytest.fixture
def eval_settings(tmp_path, mlflow_server) -> Settings:
    return Settings(home=tmp_path / "home", mlflow=MlflowSettings(url=mlflow_server, run_local=False))


def test_the_registry_imports_lazily_and_names_what_is_missing(registry):
    assert available_evals() == ["toy", "failing"]
    assert load_eval("toy").evaluate is toy_evaluate
    with pytest.raises(EvalUnavailable, match="evals.no_such_eval is not in this checkout"):
        load_eval("ghost")
    with pytest.raises(EvalUnavailable, match="unknown eval 'nope'"):
        load_eval("nope")


def test_the_shipped_registry_has_the_five_evals_and_retrieval_is_present():
    assert list(harness.EVALS) == ["retrieval", "answers", "safety", "router", "cache"]
    assert "retrieval" in available_evals()


def test_table_csv_flattens_nested_values_and_takes_every_column():
    text = table_csv([{"id": "q1", "hits": [{"doc": "a"}]}, {"id": "q2", "extra": 1.5}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0] == {"id": "q1", "hits": '[{"doc": "a"}]', "extra": ""}
    assert rows[1] == {"id": "q2", "hits": "", "extra": "1.5"}


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
    for key, value in {"RAGYARD_HOME": str(eval_settings.home), "RAGYARD_MLFLOW__URL": eval_settings.mlflow.url,
                       "RAGYARD_EVALS__EXPERIMENTS": json.dumps({"toy": f"toy-{uuid.uuid4().hex[:8]}"})}.items():
        monkeypatch.setenv(key, value)
    assert main(["eval", "run", "all", "--quick"]) == 2  # one eval failed
    out, err = capsys.readouterr()
    assert "evals present: toy, failing; not in this checkout: ghost" in out
    assert "## toy" in out and "MLflow runs in experiment 'toy-" in out
    assert "error: eval failing: ConnectionError: the llm bento" in err

    assert main(["eval", "run", "toy", "--quick", "--no-mlflow"]) == 0
    assert main(["eval", "run", "ghost"]) == 2
    assert "module evals.no_such_eval is not in this checkout" in capsys.readouterr().err


def test_cli_reports_an_unreachable_mlflow_without_a_traceback(registry, tmp_path, monkeypatch, capsys):
    from tests.conftest import free_port

    monkeypatch.setenv("RAGYARD_HOME", str(tmp_path))
    monkeypatch.setenv("RAGYARD_MLFLOW__URL", f"http://127.0.0.1:{free_port()}")
    assert main(["eval", "run", "toy"]) == 2
    assert "error: eval toy: MlflowException" in capsys.readouterr().err

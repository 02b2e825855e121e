"""The eval harness without a server: its lazy registry, the CSV of a table, and the CLI's report of an
unreachable MLflow (what a run logs to a real MLflow server: tests/integration)."""

import csv
import io

import pytest

from evals import harness
from evals.harness import EvalUnavailable, available_evals, load_eval, table_csv
from ragyard.cli import main
from tests.support.network import free_port
from tests.support.toy_evals import install_toy_evals, toy_evaluate


@pytest.fixture
def registry(monkeypatch):
    install_toy_evals(monkeypatch)


def test_the_registry_imports_lazily_and_names_what_is_missing(registry):
    assert available_evals() == ["toy", "failing"]
    assert load_eval("toy").evaluate is toy_evaluate
    with pytest.raises(EvalUnavailable, match="evals.no_such_eval is not in this checkout"):
        load_eval("ghost")
    with pytest.raises(EvalUnavailable, match="unknown eval 'nope'"):
        load_eval("nope")


def test_the_shipped_registry_has_the_evals_and_retrieval_is_present():
    assert list(harness.EVALS) == [
        "retrieval",
        "answers",
        "safety",
        "router",
        "cache",
        "memory",
        "backends",
        "sqlite-answers",
    ]
    assert "retrieval" in available_evals()
    # Own indexes, or the 1.5B model over many questions: never in `all`.
    assert harness.ON_DEMAND_EVALS == ("backends", "memory", "sqlite-answers")


def test_table_csv_flattens_nested_values_and_takes_every_column():
    text = table_csv([{"id": "q1", "hits": [{"doc": "a"}]}, {"id": "q2", "extra": 1.5}])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0] == {"id": "q1", "hits": '[{"doc": "a"}]', "extra": ""}
    assert rows[1] == {"id": "q2", "hits": "", "extra": "1.5"}


def test_cli_reports_an_unreachable_mlflow_without_a_traceback(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAGYARD_HOME", str(tmp_path))
    monkeypatch.setenv("RAGYARD_MLFLOW__URL", f"http://127.0.0.1:{free_port()}")
    assert main(["eval", "run", "toy"]) == 2
    assert "error: eval toy: MlflowException" in capsys.readouterr().err

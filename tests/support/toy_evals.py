"""Evals whose results are known, registered in the harness in place of the shipped ones."""

import importlib.machinery
import sys
import types

import pytest

from evals import harness
from evals.harness_types import EvalReport, EvalRun
from ragyard.settings import Settings

TOY = "tests.toy_eval_module"


def toy_evaluate(settings: Settings | None, quick: bool = False) -> EvalReport:
    """A small eval whose results are known, to test what the harness does with them."""
    size = 2 if quick else 3
    rows = [{"id": f"q{i}", "score": i / 2, "hits": [{"doc": "a"}, {"doc": "b"}]} for i in range(size)]
    runs = [
        EvalRun(
            "toy-a",
            {"variant": "a", "embedder_model": "my-own-model"},
            {"accuracy": 0.75, "latency_ms": 12.5},
            {"per_question": rows},
        ),
        EvalRun("toy-b", {"variant": "b"}, {"accuracy": 0.5, "latency_ms": 20.0}),
    ]
    return EvalReport("toy-experiment", runs, f"| variant | accuracy |\n| a | 0.75 |\n| b | 0.5 | (n={size})")


def failing_evaluate(settings: Settings, quick: bool = False) -> EvalReport:
    raise ConnectionError("the llm bento at http://127.0.0.1:3003 is not running")


def install_toy_evals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's registry with a toy eval, a failing one and one whose module is not in the checkout."""
    for name, evaluate in ((TOY, toy_evaluate), (TOY + "_failing", failing_evaluate)):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
        module.evaluate = evaluate  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(harness, "EVALS", {"toy": TOY, "failing": TOY + "_failing", "ghost": "evals.no_such_eval"})

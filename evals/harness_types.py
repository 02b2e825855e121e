"""What every evaluation returns, so one harness can log it to MLflow and report it.

An eval module exposes `evaluate(settings: Settings, quick: bool = False) -> EvalReport`; the
harness (not the eval) opens the MLflow runs, logs params, metrics and tables, and writes the
summary into docs/evals.md. `quick` is the fast subset that `make eval` and the tests run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ParamValue = str | int | float | bool


@dataclass
class EvalRun:
    """One MLflow run: what was evaluated (params), how it scored (metrics), detail tables as artifacts."""

    name: str
    params: dict[str, ParamValue]
    metrics: dict[str, float]
    tables: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class EvalReport:
    """The runs of one eval, all in one MLflow experiment, and a Markdown summary for people."""

    experiment: str
    runs: list[EvalRun]
    summary_markdown: str

"""The Grafana dashboards (infra/observability/dashboards) as data for tests: their PromQL queries, and
the metric names and labels each query reads (found with patterns: our queries use selectors, `by`
clauses and functions only, no offsets or subqueries)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO_ROOT

DASHBOARDS = REPO_ROOT / "infra" / "observability" / "dashboards"
# Prefixes of the series the dashboards read: ours, BentoML's and RabbitMQ's Prometheus plugin's.
SERIES = re.compile(r"\b((?:ragyard|bentoml|rabbitmq)_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b([a-z_][a-z0-9_]*)\{([^}]*)\}")
MATCHER = re.compile(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    expr: str

    def series(self) -> set[str]:
        return set(SERIES.findall(self.expr))

    def selector_labels(self) -> Iterator[tuple[str, str]]:
        """(series, label) for each label matched in a selector: `name{label="..."}`."""
        for name, matchers in SELECTOR.findall(self.expr):
            for label in MATCHER.findall(matchers):
                yield name, label

    def grouping_labels(self) -> set[str]:
        return {label.strip() for group in GROUPING.findall(self.expr) for label in group.split(",") if label.strip()}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def queries(path: Path) -> list[Query]:
    dashboard = load(path)
    return [
        Query(dashboard["uid"], panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def exposed_names(exposition: str) -> set[str]:
    """The series names in a /metrics answer (Prometheus text format)."""
    return {line.split("{")[0].split(" ")[0] for line in exposition.splitlines() if line and not line.startswith("#")}

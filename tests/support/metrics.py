"""The Prometheus metrics ragyard's code declares, read from the source (no import, no process): each
call of `ragyard.kit.metrics.counter` / `histogram`, or of prometheus_client's Counter, Gauge or
Histogram, whose name is a string literal; and the series each one exposes."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = ["ragyard", "pipelines", "router", "bentos"]
_KINDS = {
    "counter": "counter",
    "histogram": "histogram",
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
}


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    labels: frozenset[str]

    def series(self) -> dict[str, frozenset[str]]:
        """The names Prometheus sees, with the labels of each (prometheus_client's conventions)."""
        if self.kind == "counter":
            return {f"{self.name.removesuffix('_total')}_total": self.labels}
        if self.kind == "histogram":
            return {
                f"{self.name}_bucket": self.labels | {"le"},
                f"{self.name}_sum": self.labels,
                f"{self.name}_count": self.labels,
            }
        return {self.name: self.labels}


def _kind(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name) and func.id in ("counter", "histogram"):
        return _KINDS[func.id]
    if isinstance(func, ast.Name) and func.id == "LazyMetric" and call.args:  # LazyMetric("Gauge", name, ...)
        kind = call.args[0]
        if isinstance(kind, ast.Constant) and kind.value in _KINDS:
            return _KINDS[str(kind.value)]
    if isinstance(func, ast.Attribute) and func.attr in ("Counter", "Gauge", "Histogram"):
        if isinstance(func.value, ast.Name) and func.value.id == "prometheus_client":
            return _KINDS[func.attr]
    return None


def _labels(call: ast.Call) -> frozenset[str]:
    node = call.args[2] if len(call.args) > 2 else next((k.value for k in call.keywords if k.arg == "labelnames"), None)
    if node is None:
        return frozenset()
    assert isinstance(node, ast.List | ast.Tuple), f"labels of line {call.lineno} are not a literal list"
    return frozenset(str(element.value) for element in node.elts if isinstance(element, ast.Constant))


def declared_in(path: Path) -> list[Metric]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and (kind := _kind(node)) and node.args:
            lazy = isinstance(node.func, ast.Name) and node.func.id == "LazyMetric"
            if lazy:  # its arguments start with the kind: read it like the others
                node = ast.copy_location(ast.Call(node.func, node.args[1:], node.keywords), node)
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.append(Metric(name.value, kind, _labels(node)))
    return found


def declared_metrics(root: Path = REPO_ROOT) -> list[Metric]:
    return [
        metric
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        for metric in declared_in(path)
    ]


def exposed_series(metrics: list[Metric]) -> dict[str, frozenset[str]]:
    series: dict[str, frozenset[str]] = {}
    for metric in metrics:
        series.update(metric.series())
    return series

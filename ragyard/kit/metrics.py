"""Prometheus metrics, declared where they are counted and created on first use, once per process.

A bento serves each worker's metrics through the multiprocess directory BentoML sets up as the
worker starts, after the service module is imported (see `bentoml.metrics`): a metric created at
import would be written where /metrics never looks. So a module declares its metrics at import
(``GENERATIONS = counter(...)``) and each is created when first counted, and imports
prometheus_client only then. A name declared again (a module imported twice, as tests can) is the
same metric; declared again differently, an error.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

_created: dict[str, tuple[tuple, Any]] = {}  # name -> (declaration, the prometheus_client metric)
_lock = threading.Lock()


class LazyMetric:
    """A Prometheus metric that exists once it is first counted: use it as the metric it stands for
    (``.labels(...)``, ``.inc()``, ``.observe()``)."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: Sequence[str], **options: Any):
        self.declaration = (kind, name, documentation, tuple(labelnames), tuple(sorted(options.items())))
        self._metric: Any = None

    @property
    def name(self) -> str:
        return self.declaration[1]

    def metric(self) -> Any:
        if self._metric is None:
            with _lock:
                self._metric = _create(self.declaration)
        return self._metric

    def labels(self, **labels: str) -> Any:
        return self.metric().labels(**labels)

    def inc(self, amount: float = 1.0) -> None:
        self.metric().inc(amount)

    def observe(self, value: float) -> None:
        self.metric().observe(value)


def _create(declaration: tuple) -> Any:
    kind, name, documentation, labelnames, options = declaration
    if name in _created:
        known, metric = _created[name]
        if known != declaration:
            raise ValueError(f"metric {name!r} declared twice, differently: {known} and {declaration}")
        return metric
    import prometheus_client  # late on purpose: after BentoML set up the multiprocess directory

    metric = getattr(prometheus_client, kind)(name, documentation, labelnames, **dict(options))
    _created[name] = (declaration, metric)
    return metric


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> LazyMetric:
    return LazyMetric("Counter", name, documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] | None = None
) -> LazyMetric:
    return LazyMetric(
        "Histogram", name, documentation, labelnames, **({"buckets": tuple(buckets)} if buckets is not None else {})
    )

"""Prometheus metrics of the review queue, on the review bento's /metrics: how many flags wait, how long
the oldest has waited, and the decisions taken. Created lazily, once per process (after BentoML has set
up its multiprocess directory, see `ragyard.kit.metrics`)."""

from __future__ import annotations

import functools
from types import SimpleNamespace


@functools.cache
def review_metrics() -> SimpleNamespace:
    import prometheus_client  # imported late on purpose: see bentoml.metrics

    return SimpleNamespace(
        pending=prometheus_client.Gauge(
            "ragyard_review_pending", "Flagged answers waiting for a reviewer", multiprocess_mode="livemax"
        ),
        oldest=prometheus_client.Gauge(
            "ragyard_review_oldest_age_seconds",
            "How long the oldest pending flag has waited (0 when none waits)",
            multiprocess_mode="livemax",
        ),
        decisions=prometheus_client.Counter("ragyard_review_decisions", "Reviewers' decisions", ["decision"]),
    )

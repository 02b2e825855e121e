"""Prometheus metrics of the events, served on the /metrics of the process that publishes or consumes.

Created lazily, once per process (a bento's after BentoML has set up its multiprocess directory).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace


@functools.cache
def event_metrics() -> SimpleNamespace:
    import prometheus_client  # imported late on purpose: see bentoml.metrics

    return SimpleNamespace(
        published=prometheus_client.Counter(
            "ragyard_events_published", "Events accepted: confirmed by the broker, or stored in the outbox",
            ["type", "path"]),
        relayed=prometheus_client.Counter(
            "ragyard_outbox_relayed", "Outbox events the broker has since confirmed", ["type"]),
        dropped=prometheus_client.Counter(
            "ragyard_events_dropped", "Events neither the broker nor the outbox could store (the caller was told)",
            ["type"]),
        backlog=prometheus_client.Gauge(
            "ragyard_outbox_backlog", "Events waiting in the outbox for the broker", multiprocess_mode="livemax"),
        oldest=prometheus_client.Gauge(
            "ragyard_outbox_oldest_age_seconds", "Age of the oldest event in the outbox",
            multiprocess_mode="livemax"),
        consumed=prometheus_client.Counter(
            "ragyard_events_consumed", "Deliveries handled, by queue and outcome (done, duplicate, retried, dead)",
            ["queue", "outcome"]),
    )

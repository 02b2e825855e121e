"""Prometheus metrics of the router, served on the bento's /metrics.

Created lazily, once per process, after BentoML has set up its multiprocess metrics directory.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace


@functools.cache
def router_metrics() -> SimpleNamespace:
    import prometheus_client  # imported late on purpose: see bentoml.metrics

    return SimpleNamespace(
        requests=prometheus_client.Counter(
            "ragyard_router_requests", "Chat completion requests by kind and outcome", ["kind", "status"]),
        latency=prometheus_client.Histogram(
            "ragyard_router_request_seconds", "Time to the whole answer", ["kind", "cache"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)),
        step_latency=prometheus_client.Histogram(
            "ragyard_router_step_seconds", "Time per flow step", ["step"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)),
        tokens=prometheus_client.Counter(
            "ragyard_router_tokens", "Tokens used, by model and direction", ["model", "direction"]),
        cost=prometheus_client.Counter(
            "ragyard_router_cost", "Cost of answers in the catalog currency", ["model", "currency"]),
        cache=prometheus_client.Counter(
            "ragyard_router_cache_lookups", "Response cache lookups by result", ["result"]),
        routes=prometheus_client.Counter(
            "ragyard_router_route_choices", "Models chosen by the routing policy", ["policy", "model"]),
        fallbacks=prometheus_client.Counter(
            "ragyard_router_fallbacks", "Generations that moved to a fallback model", ["from_model"]),
        limited=prometheus_client.Counter(
            "ragyard_router_limited", "Requests refused by a per-key limit", ["code"]),
    )

"""Prometheus metrics of the router, served on the bento's /metrics (`ragyard.kit.metrics`: declared
here, created when first counted)."""

from __future__ import annotations

from ragyard.kit.metrics import counter, histogram

REQUESTS = counter("ragyard_router_requests", "Chat completion requests by kind and outcome", ["kind", "status"])
LATENCY = histogram(
    "ragyard_router_request_seconds",
    "Time to the whole answer",
    ["kind", "cache"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
STEP_LATENCY = histogram(
    "ragyard_router_step_seconds",
    "Time per flow step",
    ["step"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKENS = counter("ragyard_router_tokens", "Tokens used, by model and direction", ["model", "direction"])
COST = counter("ragyard_router_cost", "Cost of answers in the catalog currency", ["model", "currency"])
CACHE_LOOKUPS = counter("ragyard_router_cache_lookups", "Response cache lookups by result", ["result"])
ROUTES = counter("ragyard_router_route_choices", "Models chosen by the routing policy", ["policy", "model"])
FALLBACKS = counter("ragyard_router_fallbacks", "Generations that moved to a fallback model", ["from_model"])
LIMITED = counter("ragyard_router_limited", "Requests refused by a per-key limit", ["code"])
GROUNDING = counter(
    "ragyard_router_grounding_checks",
    "RAG answers whose checkable claims were looked up in their passages, by result: grounded, unsupported "
    "(at least one claim in none of them)",
    ["result"],
)
MEMORY_RECALLS = counter(
    "ragyard_router_memory_recalls",
    "Long-term memory lookups by outcome: used (memories joined the prompt), none, unavailable (the memory "
    "bento could not answer: answered without memories), opted_out",
    ["outcome"],
)
MEMORY_EXCHANGES = counter(
    "ragyard_router_memory_exchanges",
    "Answered exchanges for the memory bento by outcome: sent, dropped (its queue was full), failed",
    ["outcome"],
)

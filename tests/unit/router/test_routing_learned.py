"""The learned router trained from Langfuse scores read through the Langfuse SDK (the model registry:
tests/integration).

No Langfuse server can run here (it needs Postgres and ClickHouse), so the test serves the SDK's real
HTTP client JSON written after Langfuse's public API reference (GET /api/public/scores,
GET /api/public/traces/{id}) from an httpx MockTransport: the SDK's request and parsing code runs,
the server does not.
"""

from __future__ import annotations

import httpx
import pytest

from ragyard.settings import Settings
from router.routing.features import FEATURE_NAMES
from router.routing.outcomes import langfuse_outcomes, outcomes_from_langfuse

FEATURES = {name: 0.5 for name in FEATURE_NAMES}


META = {"page": 1, "limit": 100, "totalItems": 4, "totalPages": 1}


def score(score_id: str, trace_id: str, value, data_type: str = "NUMERIC", **extra) -> dict:
    return {
        "id": score_id,
        "traceId": trace_id,
        "name": "user_feedback",
        "source": "API",
        "value": value,
        "timestamp": "2026-11-27T10:00:00.000Z",
        "createdAt": "2026-11-27T10:00:00.000Z",
        "updatedAt": "2026-11-27T10:00:00.000Z",
        "dataType": data_type,
        "trace": {"userId": "u1"},
        **extra,
    }


def trace(trace_id: str, metadata: dict | None, model: str | None) -> dict:
    observations = (
        []
        if model is None
        else [
            {
                "id": f"obs-{trace_id}",
                "traceId": trace_id,
                "type": "GENERATION",
                "name": "generate",
                "startTime": "2026-11-27T10:00:00.000Z",
                "model": model,
                "level": "DEFAULT",
                "usage": {"input": 10, "output": 5, "total": 15, "unit": "TOKENS"},
            }
        ]
    )
    return {
        "id": trace_id,
        "timestamp": "2026-11-27T10:00:00.000Z",
        "name": "chat",
        "metadata": metadata,
        "htmlPath": f"/trace/{trace_id}",
        "latency": 1.5,
        "totalCost": 0.001,
        "observations": observations,
        "scores": [],
    }


RECORDED = {
    "/api/public/scores": {
        "data": [
            score("s1", "t1", 4.0),  # numeric 1..5 -> (4-1)/4
            score("s2", "t2", 1.0, "BOOLEAN", stringValue="True"),
            score("s3", "t3", None, "CATEGORICAL", stringValue="good"),  # no numeric value: skipped
            score("s4", "t4", 5.0),  # trace without routing features: skipped
        ],
        "meta": META,
    },
    "/api/public/traces/t1": trace("t1", {"routing_features": FEATURES, "route": {"model": "ignored"}}, "qwen"),
    "/api/public/traces/t2": trace("t2", {"routing_features": FEATURES, "route": {"model": "smol"}}, None),
    "/api/public/traces/t4": trace("t4", {"route": {"model": "smol"}}, "smol"),
}


def test_outcomes_from_langfuse_scores_through_the_sdk():
    from langfuse.api.client import FernLangfuse

    requested = []

    def respond(http_request: httpx.Request) -> httpx.Response:
        requested.append(http_request.url.path)
        assert http_request.headers["authorization"].startswith("Basic ")
        body = RECORDED.get(http_request.url.path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404, json={"message": "no"})

    api = FernLangfuse(
        base_url="http://langfuse.test",
        username="pk-test",
        password="sk-test",
        httpx_client=httpx.Client(transport=httpx.MockTransport(respond)),
    )
    outcomes = outcomes_from_langfuse(api, "user_feedback", low=1.0, high=5.0)
    assert [(o.model, o.quality, o.source) for o in outcomes] == [
        ("qwen", pytest.approx(0.75), "langfuse:t1"),  # the generation's model beats the route metadata
        ("smol", 1.0, "langfuse:t2"),  # boolean True; no generation: the route's model
    ]
    assert outcomes[0].features == FEATURES
    assert requested.count("/api/public/scores") == 1 and "/api/public/traces/t3" not in requested


def test_no_langfuse_outcomes_without_keys():
    assert langfuse_outcomes(Settings()) == []

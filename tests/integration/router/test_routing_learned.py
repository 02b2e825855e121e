"""The learned router: registered in a real MLflow server's model registry and loaded by alias, and
trained from Langfuse scores read through the Langfuse SDK.

No Langfuse server can run here (it needs Postgres and ClickHouse), so the Langfuse test serves the
SDK's real HTTP client JSON written after Langfuse's public API reference (GET /api/public/scores,
GET /api/public/traces/{id}) from an httpx MockTransport: the SDK's request and parsing code runs,
the server does not.
"""

from __future__ import annotations

import httpx
import pytest

from ragyard.settings import MlflowSettings, RouterSettings, Settings
from router.routing.base import ModelCard, RouteRequest
from router.routing.features import FEATURE_NAMES, routing_features
from router.routing.outcomes import langfuse_outcomes, outcomes_from_langfuse
from router.routing.policies import Learned, Threshold, build_policy
from router.routing.predictor import Outcome, QualityPredictor, load_predictor, register_predictor

SMALL = ModelCard("small", 2048, input_per_1k=0.01, output_per_1k=0.02)
LARGE = ModelCard("large", 8192, input_per_1k=0.20, output_per_1k=0.40)


def request(top_score: float) -> RouteRequest:
    return RouteRequest("join paths", ({"role": "user", "content": "join paths"},),
                        ({"score": top_score, "text": "join paths"},), 64)


def predictor(small_slope: float) -> QualityPredictor:
    outcomes = []
    for i in range(12):
        top = i / 11
        features = routing_features(request(top))
        outcomes += [Outcome(features, "small", min(1.0, small_slope * top)), Outcome(features, "large", 0.6)]
    return QualityPredictor.fit(outcomes, alpha=0.01)


def test_learned_policy_round_trips_through_the_model_registry_and_loads_by_alias(mlflow_server):
    from mlflow import MlflowClient

    name = "test-routing-learned"
    settings = Settings(mlflow=MlflowSettings(url=mlflow_server),
                        router=RouterSettings(routing_model_name=name, routing_model_alias="production",
                                              routing_threshold=0.5, routing_cost_weight=0.0))
    v1 = register_predictor(predictor(1.0), mlflow_server, name, "production", description="slope 1")
    policy = build_policy("learned", settings)  # loads models:/test-routing-learned@production
    assert isinstance(policy, Learned) and policy.predictor.models == ("small", "large")
    assert policy.choose(request(0.9), (SMALL, LARGE)).model == "small"  # ~0.9 > 0.6
    assert policy.choose(request(0.2), (SMALL, LARGE)).model == "large"
    threshold = build_policy("threshold", settings)
    assert isinstance(threshold, Threshold) and threshold.choose(request(0.9), (SMALL, LARGE)).model == "small"

    # A new version with a weaker small model; moving the alias changes what loads.
    v2 = register_predictor(predictor(0.5), mlflow_server, name, "candidate")
    assert int(v2) == int(v1) + 1
    assert build_policy("learned", settings).choose(request(0.9), (SMALL, LARGE)).model == "small"
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    client.set_registered_model_alias(name, "production", v2)
    assert build_policy("learned", settings).choose(request(0.9), (SMALL, LARGE)).model == "large"  # 0.45 < 0.6
    assert client.get_model_version(name, v1).description == "slope 1"


def test_loading_an_unset_alias_fails_with_mlflow_error(mlflow_server):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        load_predictor(mlflow_server, "test-routing-never-registered", "production")


FEATURES = {name: 0.5 for name in FEATURE_NAMES}
META = {"page": 1, "limit": 100, "totalItems": 4, "totalPages": 1}


def score(score_id: str, trace_id: str, value, data_type: str = "NUMERIC", **extra) -> dict:
    return {"id": score_id, "traceId": trace_id, "name": "user_feedback", "source": "API", "value": value,
            "timestamp": "2026-11-27T10:00:00.000Z", "createdAt": "2026-11-27T10:00:00.000Z",
            "updatedAt": "2026-11-27T10:00:00.000Z", "dataType": data_type, "trace": {"userId": "u1"}, **extra}


def trace(trace_id: str, metadata: dict | None, model: str | None) -> dict:
    observations = [] if model is None else [{
        "id": f"obs-{trace_id}", "traceId": trace_id, "type": "GENERATION", "name": "generate",
        "startTime": "2026-11-27T10:00:00.000Z", "model": model, "level": "DEFAULT",
        "usage": {"input": 10, "output": 5, "total": 15, "unit": "TOKENS"},
    }]
    return {"id": trace_id, "timestamp": "2026-11-27T10:00:00.000Z", "name": "chat", "metadata": metadata,
            "htmlPath": f"/trace/{trace_id}", "latency": 1.5, "totalCost": 0.001, "observations": observations,
            "scores": []}


RECORDED = {
    "/api/public/scores": {"data": [
        score("s1", "t1", 4.0),  # numeric 1..5 -> (4-1)/4
        score("s2", "t2", 1.0, "BOOLEAN", stringValue="True"),
        score("s3", "t3", None, "CATEGORICAL", stringValue="good"),  # no numeric value: skipped
        score("s4", "t4", 5.0),  # trace without routing features: skipped
    ], "meta": META},
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

    api = FernLangfuse(base_url="http://langfuse.test", username="pk-test", password="sk-test",
                       httpx_client=httpx.Client(transport=httpx.MockTransport(respond)))
    outcomes = outcomes_from_langfuse(api, "user_feedback", low=1.0, high=5.0)
    assert [(o.model, o.quality, o.source) for o in outcomes] == [
        ("qwen", pytest.approx(0.75), "langfuse:t1"),  # the generation's model beats the route metadata
        ("smol", 1.0, "langfuse:t2"),  # boolean True; no generation: the route's model
    ]
    assert outcomes[0].features == FEATURES
    assert requested.count("/api/public/scores") == 1 and "/api/public/traces/t3" not in requested


def test_no_langfuse_outcomes_without_keys():
    assert langfuse_outcomes(Settings()) == []


def synthetic_answers(n: int = 40):
    """Hand-built answer records: the weak model answers well exactly when retrieval is confident."""
    from evals.answers import AnswerRecord, AnswerSet, QAItem
    from evals.retrieval import Gold

    items, contexts, records = [], [], []
    for i in range(n):
        top = (i % 10) / 9
        item = QAItem(f"q{i}", f"question {i} about join paths", "reference", (Gold("d", "s"),))
        hits = [{"chunk_id": f"c{i}", "doc_id": "d", "title": "t", "section": "s", "score": top, "text": "join paths"}]
        features = routing_features(RouteRequest(item.question, (), tuple(hits), 96))
        items.append(item)
        contexts.append(hits)
        for model, quality, cost in (("weak", top, 0.001), ("strong", 0.7, 0.01)):
            records.append(AnswerRecord(item.id, model, "answer", quality, 1.0, 0, 0, 0, 1.0, cost, 100, 20,
                                        True, features=features))
    return AnswerSet(items, contexts, ["weak", "strong"], records, "ragyard-rag", "1", "test", "synthetic")


def test_router_eval_beats_random_and_registers_the_predictor(mlflow_server):
    from evals.router import evaluate_router

    settings = Settings(mlflow=MlflowSettings(url=mlflow_server),
                        router=RouterSettings(routing_model_name="test-router-eval"))
    # The strong model's tokens cost ten times the weak one's (per 1k tokens, input and output).
    prices = {"weak": (0.01, 0.01), "strong": (0.1, 0.1)}
    report = evaluate_router(synthetic_answers(), settings, register=True, prices=prices)
    runs = {run.params["policy"]: run for run in report.runs}
    assert set(runs) == {"threshold", "learned"}
    threshold = runs["threshold"].metrics
    # weak quality is top_score, strong 0.7: routing weak when confident recovers most of the gap cheaply
    assert threshold["apgr"] > 0.6 and threshold["cpt_80"] < 0.8
    assert runs["threshold"].params["weak_model"] == "weak" and runs["threshold"].params["strong_model"] == "strong"
    curve = runs["threshold"].tables["curve"]
    assert {p["policy"] for p in curve} == {"cheapest", "strongest", "threshold"}
    assert [p["strong_share"] for p in curve if p["policy"] == "cheapest"] == [0.0]
    assert "models:/test-router-eval@production" in report.summary_markdown
    assert load_predictor(mlflow_server, "test-router-eval", "production").models == ("weak", "strong")

"""The learned router: registered in a real MLflow server's model registry and loaded by alias, and
the router eval that trains and registers it (its Langfuse outcomes: tests/unit)."""

from __future__ import annotations

import pytest

from ragyard.settings import MlflowSettings, RouterSettings, Settings
from router.routing.base import ModelCard, RouteRequest
from router.routing.features import routing_features
from router.routing.policies import Learned, Threshold, build_policy
from router.routing.predictor import Outcome, QualityPredictor
from router.routing.predictor_registry import (
    DOCUMENT,
    HASH_TAG,
    UntrustedPredictor,
    load_predictor,
    register_predictor,
)

SMALL = ModelCard("small", 2048, input_per_1k=0.01, output_per_1k=0.02)
LARGE = ModelCard("large", 8192, input_per_1k=0.20, output_per_1k=0.40)


def request(top_score: float) -> RouteRequest:
    return RouteRequest(
        "join paths", ({"role": "user", "content": "join paths"},), ({"score": top_score, "text": "join paths"},), 64
    )


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
    settings = Settings(
        mlflow=MlflowSettings(url=mlflow_server),
        router=RouterSettings(
            routing_model_name=name, routing_model_alias="production", routing_threshold=0.5, routing_cost_weight=0.0
        ),
    )
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


def test_the_router_loads_only_the_document_that_was_registered(mlflow_server):
    import mlflow
    from mlflow import MlflowClient

    name = "test-routing-untrusted"
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    version = client.get_model_version(name, register_predictor(predictor(1.0), mlflow_server, name, "production"))
    recorded = version.tags[HASH_TAG]
    assert load_predictor(mlflow_server, name, "production", pinned_sha256=recorded).models == ("small", "large")

    # Pinned to another document: refused, although the registry is consistent.
    with pytest.raises(UntrustedPredictor, match="pinned"):
        load_predictor(mlflow_server, name, "production", pinned_sha256="0" * 64)

    # A version that is not our document (a pyfunc model, anything else): refused without reading it.
    foreign = client.create_model_version(name, version.source, run_id=version.run_id)
    client.set_registered_model_alias(name, "foreign", foreign.version)
    with pytest.raises(UntrustedPredictor, match="not a ragyard.quality-predictor/1 document"):
        load_predictor(mlflow_server, name, "foreign")

    # The registered document replaced in the artifact store (say, by a pickle): its hash no longer matches.
    with mlflow.start_run(run_id=version.run_id):
        mlflow.log_text("cos\nsystem\n(S'echo owned'\ntR.", f"router_model/{DOCUMENT}")
    with pytest.raises(UntrustedPredictor, match="was registered"):
        load_predictor(mlflow_server, name, "production")


def test_loading_an_unset_alias_fails_with_mlflow_error(mlflow_server):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        load_predictor(mlflow_server, "test-routing-never-registered", "production")


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
            records.append(
                AnswerRecord(
                    item.id, model, "answer", quality, 1.0, 0, 0, 0, 1.0, cost, 100, 20, True, features=features
                )
            )
    return AnswerSet(items, contexts, ["weak", "strong"], records, "ragyard-rag", "1", "test", "synthetic")


def test_router_eval_beats_random_and_registers_the_predictor(mlflow_server):
    from evals.router import evaluate_router

    settings = Settings(
        mlflow=MlflowSettings(url=mlflow_server), router=RouterSettings(routing_model_name="test-router-eval")
    )
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

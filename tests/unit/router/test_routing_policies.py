"""Routing policies on hand-built catalogs, features by hand, the predictor fit, and the factory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from ragyard.settings import RouterSettings, Settings
from router.routing.base import POLICIES, ModelCard, RouteRequest
from router.routing.features import FEATURE_NAMES, routing_features
from router.routing.policies import (
    Learned,
    Threshold,
    build_policy,
    estimated_prompt_tokens,
)
from router.routing.predictor import Outcome, PredictorDocument, QualityPredictor, UnknownModel, feature_matrix

SMALL = ModelCard("small", 2048, input_per_1k=0.01, output_per_1k=0.02, quality=0.2)
MEDIUM = ModelCard("medium", 8192, input_per_1k=0.05, output_per_1k=0.10, quality=0.5)
LARGE = ModelCard("large", 8192, input_per_1k=0.20, output_per_1k=0.40, quality=0.8)
CATALOG = (MEDIUM, LARGE, SMALL)  # out of order on purpose


def request(question: str = "how do I join paths", hits: tuple[dict, ...] = (), max_tokens: int = 100) -> RouteRequest:
    return RouteRequest(
        question=question, messages=({"role": "user", "content": question},), context=hits, max_tokens=max_tokens
    )


CONFIDENT = (
    {"chunk_id": "a", "doc_id": "d", "title": "os.path", "score": 0.9, "text": "os.path.join joins paths"},
    {"chunk_id": "b", "doc_id": "d", "title": "os.path", "score": 0.3, "text": "unrelated words here"},
)


def test_features_by_hand():
    features = routing_features(request("How do I join paths?", CONFIDENT))
    assert set(features) == set(FEATURE_NAMES)
    assert features["question_tokens"] == 5  # how do i join paths
    assert features["context_hits"] == 2
    assert features["top_score"] == 0.9 and features["mean_score"] == pytest.approx(0.6)
    assert features["score_gap"] == pytest.approx(0.6)
    # content words {join, paths}: both in the best hit, both in the whole context
    assert features["top_overlap"] == 1.0 and features["question_overlap"] == 1.0
    empty = routing_features(request("what", ()))
    assert empty["top_score"] == 0.0 and empty["question_overlap"] == 0.0


def test_cheapest_and_strongest():
    settings = Settings()
    assert build_policy("cheapest", settings).choose(request(), CATALOG).model == "small"
    decision = build_policy("strongest", settings).choose(request(), CATALOG)
    assert decision.model == "large" and decision.policy == "strongest"
    # without catalog qualities, the dearest model counts as the strongest
    unrated = tuple(ModelCard(c.name, c.context_length, c.input_per_1k, c.output_per_1k) for c in CATALOG)
    assert build_policy("strongest", settings).choose(request(), unrated).model == "large"


def test_cheapest_weighs_prompt_and_completion_prices():
    # cheap prompt, dear completion vs the reverse: which is cheaper depends on the request's sizes
    prompt_heavy = ModelCard("prompt-dear", 4096, input_per_1k=1.0, output_per_1k=0.0)
    output_heavy = ModelCard("output-dear", 4096, input_per_1k=0.0, output_per_1k=1.0)
    long_context = request(hits=({"text": "x" * 8000, "score": 1.0},), max_tokens=10)
    assert (
        build_policy("cheapest", Settings()).choose(long_context, (prompt_heavy, output_heavy)).model == "output-dear"
    )
    short = request(max_tokens=500)
    assert estimated_prompt_tokens(short) < 500
    assert build_policy("cheapest", Settings()).choose(short, (prompt_heavy, output_heavy)).model == "prompt-dear"


def fitted_predictor() -> QualityPredictor:
    """small is good exactly when retrieval is confident (top_score high); large is always decent."""
    outcomes = []
    for i in range(20):
        top = i / 19
        features = routing_features(request("join paths", ({"score": top, "text": "join paths"},)))
        outcomes.append(Outcome(features, "small", top))
        outcomes.append(Outcome(features, "large", 0.7))
    return QualityPredictor.fit(outcomes, alpha=0.01)


def test_predictor_learns_per_model_slopes():
    predictor = fitted_predictor()
    low = routing_features(request("join paths", ({"score": 0.1, "text": "join paths"},)))
    high = routing_features(request("join paths", ({"score": 0.95, "text": "join paths"},)))
    small = predictor.predict([low, high], "small")
    assert small[0] < 0.2 and small[1] > 0.85
    assert predictor.predict([low, high], "large") == pytest.approx([0.7, 0.7], abs=0.02)
    with pytest.raises(UnknownModel):
        predictor.predict([low], "medium")


def test_predictor_is_numbers_that_predict_as_the_fitted_scikit_learn_pipeline_does():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predictor = fitted_predictor()
    rows = [routing_features(request("join paths", ({"score": s / 7, "text": "x" * (s * 300)},))) for s in range(8)]
    outcomes = [  # the same outcomes for small as fitted_predictor's, fitted by scikit-learn itself
        (routing_features(request("join paths", ({"score": i / 19, "text": "join paths"},))), i / 19) for i in range(20)
    ]
    reference = make_pipeline(StandardScaler(), Ridge(alpha=0.01)).fit(
        feature_matrix([f for f, _ in outcomes]), [q for _, q in outcomes]
    )
    expected = np.clip(reference.predict(feature_matrix(rows)), 0, 1)
    assert predictor.predict(rows, "small") == pytest.approx(expected, abs=1e-9)
    # Stored as JSON and read back, it predicts the same.
    document = PredictorDocument.model_validate_json(predictor.document().model_dump_json())
    again = QualityPredictor.from_document(document)
    assert again.predict(rows, "small") == pytest.approx(predictor.predict(rows, "small"), abs=1e-12)
    assert again.trained_on == {"small": 20, "large": 20}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.update(format="pickle"), "format"),
        (lambda d: d.update(features=list(reversed(d["features"]))), "made for the features"),
        (lambda d: d["models"]["small"].update(coef=d["models"]["small"]["coef"][:-1]), "one number per feature"),
        (lambda d: d["models"]["small"].update(intercept=float("nan")), "intercept"),
        (lambda d: d["models"]["small"].update(scale=[0.0] * len(FEATURE_NAMES)), "scales must be positive"),
        (lambda d: d["models"]["small"].update(code="__import__('os')"), "code"),
    ],
)
def test_a_predictor_document_that_is_not_exactly_ours_is_refused(damage, message):
    document = json.loads(fitted_predictor().document().model_dump_json())
    damage(document)
    with pytest.raises(ValidationError, match=message):
        PredictorDocument.model_validate_json(json.dumps(document))


def test_predictor_refuses_too_few_outcomes():
    with pytest.raises(ValueError, match="at least 5 outcomes"):
        QualityPredictor.fit([Outcome({n: 0.0 for n in FEATURE_NAMES}, "small", 1.0)])


def test_threshold_routes_on_predicted_quality_of_the_cheaper_model():
    policy = Threshold(fitted_predictor(), threshold=0.5)
    catalog = (SMALL, LARGE)
    confident = request("join paths", ({"score": 0.9, "text": "join paths"},))
    unsure = request("join paths", ({"score": 0.2, "text": "join paths"},))
    decision = policy.choose(confident, catalog)
    assert decision.model == "small" and decision.predicted_quality > 0.5 and ">= threshold" in decision.reason
    assert policy.choose(unsure, catalog).model == "large"
    assert Threshold(fitted_predictor(), threshold=0.0).choose(unsure, catalog).model == "small"
    assert Threshold(fitted_predictor(), threshold=1.0).choose(confident, catalog).model == "large"


def test_learned_trades_predicted_quality_against_relative_cost():
    catalog = (SMALL, LARGE, MEDIUM)  # medium is unknown to the predictor: skipped
    confident = request("join paths", ({"score": 0.95, "text": "join paths"},))
    unsure = request("join paths", ({"score": 0.3, "text": "join paths"},))
    free = Learned(fitted_predictor(), cost_weight=0.0)
    assert free.choose(confident, catalog).model == "small"  # ~0.95 beats 0.7 on quality alone
    assert free.choose(unsure, catalog).model == "large"
    # large costs 20x small; a weight of 0.5 makes large worth it only for > ~0.475 more quality
    thrifty = Learned(fitted_predictor(), cost_weight=0.5)
    assert thrifty.choose(unsure, catalog).model == "small"
    with pytest.raises(UnknownModel):
        free.choose(confident, (MEDIUM,))


def test_factory_reads_settings_and_refuses_unknown_names():
    settings = Settings(router=RouterSettings(routing_threshold=0.9, routing_cost_weight=0.25))
    predictor = fitted_predictor()
    threshold = build_policy("threshold", settings, predictor)
    assert isinstance(threshold, Threshold) and threshold.threshold == 0.9
    learned = build_policy("learned", settings, predictor)
    assert isinstance(learned, Learned) and learned.cost_weight == 0.25
    assert {"cheapest", "strongest", "threshold", "learned"} <= set(POLICIES)
    with pytest.raises(ValueError, match="unknown routing policy 'fastest'"):
        build_policy("fastest", settings)

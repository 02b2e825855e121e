"""The routing policies, and `build_policy`, the one factory the router bento calls.

- cheapest: the model with the lowest estimated cost for this request.
- strongest: the model with the highest known quality (the catalog's `quality`; without one, the
  most expensive, on the assumption that price follows capability).
- threshold: the cheapest model when its predicted quality for this request reaches a threshold,
  else the strongest. Two tiers, one knob: sweeping the threshold traces a quality-cost curve.
- learned: every model the predictor knows gets a predicted quality; the policy picks the one with
  the best predicted quality minus `cost_weight` x its estimated cost for this request relative to
  the dearest candidate's (so 0.2 means: pay the dearest model only for 0.2 more expected quality). The
  predictor is trained from logged outcomes (eval results, Langfuse scores) and loaded from the
  MLflow model registry by alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragyard.tokens import estimate_prompt_tokens
from router.routing.base import POLICIES, ModelCard, RouteDecision, RouteRequest, RoutingPolicy, register
from router.routing.features import routing_features
from router.routing.predictor import QualityPredictor, UnknownModel
from router.routing.predictor_registry import load_predictor

if TYPE_CHECKING:
    from ragyard.settings import RouterBentoSettings


def estimated_prompt_tokens(request: RouteRequest) -> int:
    """Good enough to rank prices (usage is priced exactly later): the messages, with the question and
    the retrieved context that go into the prompt."""
    context_chars = len(request.question) + sum(len(str(h.get("text") or "")) for h in request.context)
    return estimate_prompt_tokens([str(m.get("content") or "") for m in request.messages], context_chars)


def estimated_cost(card: ModelCard, request: RouteRequest) -> float:
    """Worst-case cost of `request` on `card`: the estimated prompt and all of max_tokens."""
    return card.cost(estimated_prompt_tokens(request), request.max_tokens)


def cheapest_card(catalog: Sequence[ModelCard], request: RouteRequest) -> ModelCard:
    return min(catalog, key=lambda c: (estimated_cost(c, request), c.name))


def strongest_card(catalog: Sequence[ModelCard]) -> ModelCard:
    rated = [c for c in catalog if c.quality is not None]
    if rated:
        return max(rated, key=lambda c: (c.quality, c.output_per_1k + c.input_per_1k, c.name))
    return max(catalog, key=lambda c: (c.output_per_1k + c.input_per_1k, c.name))


@register
class Cheapest(RoutingPolicy):
    name = "cheapest"

    def choose(self, request: RouteRequest, catalog: Sequence[ModelCard]) -> RouteDecision:
        card = cheapest_card(catalog, request)
        return RouteDecision(
            card.name, self.name, f"lowest estimated cost ({estimated_cost(card, request):.6f})", card.quality
        )


@register
class Strongest(RoutingPolicy):
    name = "strongest"

    def choose(self, request: RouteRequest, catalog: Sequence[ModelCard]) -> RouteDecision:
        card = strongest_card(catalog)
        why = f"highest catalog quality ({card.quality})" if card.quality is not None else "highest price"
        return RouteDecision(card.name, self.name, why, card.quality)


@register
class Threshold(RoutingPolicy):
    name = "threshold"

    def __init__(self, predictor: QualityPredictor, threshold: float):
        self.predictor = predictor
        self.threshold = threshold

    def choose(self, request: RouteRequest, catalog: Sequence[ModelCard]) -> RouteDecision:
        cheap, strong = cheapest_card(catalog, request), strongest_card(catalog)
        if cheap.name == strong.name:
            return RouteDecision(cheap.name, self.name, "the cheapest model is also the strongest", cheap.quality)
        predicted = float(self.predictor.predict([routing_features(request)], cheap.name)[0])
        if predicted >= self.threshold:
            return RouteDecision(
                cheap.name,
                self.name,
                f"predicted quality of {cheap.name} {predicted:.3f} >= threshold {self.threshold}",
                predicted,
            )
        return RouteDecision(
            strong.name,
            self.name,
            f"predicted quality of {cheap.name} {predicted:.3f} < threshold {self.threshold}",
            None,
        )


@register
class Learned(RoutingPolicy):
    name = "learned"

    def __init__(self, predictor: QualityPredictor, cost_weight: float):
        self.predictor = predictor
        self.cost_weight = cost_weight

    def choose(self, request: RouteRequest, catalog: Sequence[ModelCard]) -> RouteDecision:
        known = [c for c in catalog if c.name in self.predictor.models]
        if not known:
            raise UnknownModel(
                f"the router model knows none of the catalog models {[c.name for c in catalog]}; "
                f"it was trained on {list(self.predictor.models)}"
            )
        features = [routing_features(request)]
        costs = {card.name: estimated_cost(card, request) for card in known}
        # Cost relative to the dearest candidate, so cost_weight means the same at any price level.
        top_cost = max(costs.values()) or 1.0
        scored = []
        for card in known:
            quality = float(self.predictor.predict(features, card.name)[0])
            relative = costs[card.name] / top_cost
            scored.append((quality - self.cost_weight * relative, -relative, quality, card.name))
        _, minus_relative, quality, model = max(scored)
        return RouteDecision(
            model,
            self.name,
            f"best predicted quality {quality:.3f} minus {self.cost_weight} x relative cost "
            f"{-minus_relative:.3f} among {len(known)} models",
            quality,
        )


def build_policy(name: str, settings: RouterBentoSettings, predictor: QualityPredictor | None = None) -> RoutingPolicy:
    """The policy `name`, configured from `settings.router`.

    threshold and learned need a quality predictor: `predictor` when given (tests, evals), else the
    one registered in MLflow as `settings.router.routing_model_name@routing_model_alias`.
    """
    if name not in POLICIES:
        raise ValueError(f"unknown routing policy {name!r}; expected one of {sorted(POLICIES)}")
    router = settings.router
    if name not in ("threshold", "learned"):
        return POLICIES[name]()
    if predictor is None:
        predictor = load_predictor(
            settings.mlflow.url, router.routing_model_name, router.routing_model_alias, router.routing_model_sha256
        )
    if name == "threshold":
        return Threshold(predictor, router.routing_threshold)
    return Learned(predictor, router.routing_cost_weight)

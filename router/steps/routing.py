"""Routing: the catalog of models, the model a request names, the routing policy's choice for
``ragyard/auto``, and the chain of fallbacks behind the chosen model."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import anyio

from ragyard.contracts.retriever import Hit
from ragyard.kit.errors import ServiceError
from ragyard.settings import RouterBentoSettings
from router import metrics
from router.catalog import Catalog, CatalogEntry
from router.chat import AUTO, RAG_PREFIX, ChatRequest, wire_messages
from router.routing.base import ModelCard, RouteDecision, RouteRequest, RoutingPolicy
from router.routing.features import routing_features
from router.routing.policies import Strongest, build_policy
from router.turn import Turn

logger = logging.getLogger("ragyard.router.routing")
POLICY_RETRY_S = 30.0  # a policy that could not be built is tried again after this


class Routing:
    def __init__(self, catalog: Catalog, settings: RouterBentoSettings):
        self.catalog = catalog
        self.settings = settings
        self.config = settings.router
        self.policy: RoutingPolicy | None = None
        self.policy_failed_at = -1e9
        self.policy_error = ""

    async def models(self, turn: Turn) -> dict[str, CatalogEntry]:
        """The catalog's models that can serve the request: those that support tools when it offers
        some to choose from; a 400 when the named one cannot, or none can."""
        with turn.step("catalog"):
            catalog = await turn.guard(self.catalog.current(), 10.0)
        request = turn.request
        if not request.chooses_tools:
            return catalog
        capable = {name: entry for name, entry in catalog.items() if entry.supports_tools}
        named = request.model.removeprefix(RAG_PREFIX)
        if named in catalog and named not in capable:
            raise ServiceError(
                400,
                f"tools: model {named!r} does not choose among tools; force a call with "
                f"tool_choice, or use one of {sorted(capable)}",
                param="tools",
            )
        if not capable:
            raise ServiceError(400, "tools: no model here chooses among tools", param="tools")
        return capable

    def pinned(self, request: ChatRequest, catalog: dict[str, CatalogEntry]) -> str | None:
        """The catalog model a request names (None for ragyard/auto); 404 for an unknown one."""
        if request.model == AUTO:
            return None
        name = request.model.removeprefix(RAG_PREFIX)
        if name not in catalog:
            known = ", ".join([AUTO, *(f"{RAG_PREFIX}{n}" for n in catalog), *catalog])
            raise ServiceError(
                404,
                f"model: {request.model!r} is not served here; choose one of {known}",
                param="model",
                code="model_not_found",
            )
        return name

    def candidates(self, catalog: dict[str, CatalogEntry], pinned: str | None) -> list[CatalogEntry]:
        """The models that may answer: a pinned model and its fallbacks; any model for a routed request."""
        return self.fallback_chain(catalog, pinned) if pinned else list(catalog.values())

    def fallback_chain(self, catalog: dict[str, CatalogEntry], model: str) -> list[CatalogEntry]:
        """The chosen model, then up to max_fallbacks others: other upstreams first (a different
        backend is likelier up), then by quality, then by price."""
        first = catalog[model]
        others = sorted(
            (e for n, e in catalog.items() if n != model),
            key=lambda e: (e.upstream == first.upstream, -(e.card.quality or 0.0), e.card.output_per_1k),
        )
        return [first, *others[: self.config.max_fallbacks]]

    async def route(
        self, turn: Turn, catalog: dict[str, CatalogEntry], pinned: str | None, hits: Sequence[Hit]
    ) -> RouteDecision:
        """The model to answer with, and why; recorded in the outcome, the trace and the metrics."""
        request = turn.request
        with turn.step("route") as span:
            if pinned:
                decision = RouteDecision(pinned, "pinned", f"the request names {request.model}")
            else:
                route_request = RouteRequest(
                    question=request.question,
                    messages=tuple(wire_messages(request.messages)),
                    context=tuple(h.model_dump() for h in hits),
                    max_tokens=request.max_tokens,
                    user_id=request.user,
                )
                decision = await self.choose(route_request, [e.card for e in catalog.values()])
                # The learned router trains on these features with the outcome's scores.
                turn.trace.attributes["routing_features"] = routing_features(route_request)
            span.attributes.update({"model": decision.model, "policy": decision.policy, "reason": decision.reason})
        turn.outcome.route = decision
        metrics.ROUTES.labels(policy=decision.policy, model=decision.model).inc()
        return decision

    async def choose(self, request: RouteRequest, cards: list[ModelCard]) -> RouteDecision:
        """The policy's choice; `strongest` when the policy is unavailable or fails, the reason saying so."""
        policy, note = await self.routing_policy()
        try:
            decision = policy.choose(request, cards)
        except Exception as exc:  # noqa: BLE001 - e.g. a predictor that knows none of the models
            note = f"policy {policy.name!r} failed ({type(exc).__name__}: {exc}); "
            decision = Strongest().choose(request, cards)
        if note:
            decision = dataclasses.replace(decision, reason=note + decision.reason)
        return decision

    async def routing_policy(self) -> tuple[RoutingPolicy, str]:
        """The configured policy, built once (threshold and learned load their predictor from
        MLflow); while it cannot be built, `strongest` stands in and the note says why."""
        if self.policy is None and time.monotonic() - self.policy_failed_at > POLICY_RETRY_S:
            try:
                self.policy = await anyio.to_thread.run_sync(build_policy, self.config.routing_policy, self.settings)
            except Exception as exc:  # noqa: BLE001 - an unavailable predictor must not fail requests
                self.policy_failed_at = time.monotonic()
                self.policy_error = f"{type(exc).__name__}: {exc}"[:300]
                logger.warning("routing policy %r unavailable: %s", self.config.routing_policy, self.policy_error)
        if self.policy is None:
            return Strongest(), f"policy {self.config.routing_policy!r} unavailable ({self.policy_error}); "
        return self.policy, ""

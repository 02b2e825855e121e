"""The routing contract: given a request and its retrieval context, choose a model and say why.

Policies (cheapest, strongest, threshold, learned, ...) implement `RoutingPolicy.choose` and
register under a name; the router bento looks them up by that name from its settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class ModelCard:
    """A catalog model as the router sees it (from the LLM bento's GET /v1/models)."""

    name: str
    context_length: int
    input_per_1k: float  # price in the catalog currency per 1,000 prompt tokens
    output_per_1k: float  # ... per 1,000 completion tokens
    quality: float | None = None  # configured or measured answer quality in [0, 1], if known

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000


@dataclass(frozen=True)
class RouteRequest:
    question: str
    messages: tuple[dict, ...]
    context: tuple[dict, ...]  # retrieved hits: chunk_id, doc_id, title, text, score
    max_tokens: int
    user_id: str | None = None


@dataclass(frozen=True)
class RouteDecision:
    model: str
    policy: str
    reason: str
    predicted_quality: float | None = None


class RoutingPolicy(ABC):
    name: ClassVar[str]

    @abstractmethod
    def choose(self, request: RouteRequest, catalog: Sequence[ModelCard]) -> RouteDecision:
        """Pick one model of `catalog` (never empty) for `request`."""


POLICIES: dict[str, type[RoutingPolicy]] = {}


def register(policy: type[RoutingPolicy]) -> type[RoutingPolicy]:
    POLICIES[policy.name] = policy
    return policy

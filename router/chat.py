"""What a chat completion asks and answers, typed as the flow's steps hand it on: messages, the
request, citations, the outcome. `wire()` gives each the JSON shape it has in responses, caches
and OpenAI's API.

Model names: ``ragyard/auto`` (RAG, routed by the policy in settings), ``ragyard/<catalog model>``
(RAG on that model), a plain catalog model (no retrieval: the messages go to the model as they are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ragyard.contracts.retriever import Hit
from router.keys import ApiKey
from router.routing.base import RouteDecision
from router.tracing import new_trace_id

RAG_PREFIX = "ragyard/"
AUTO = "ragyard/auto"


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str

    @classmethod
    def of(cls, wire: Mapping) -> Message:
        return cls(str(wire["role"]), str(wire.get("content") or ""))

    def wire(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def wire_messages(messages: Iterable[Message]) -> list[dict[str, str]]:
    return [message.wire() for message in messages]


@dataclass(frozen=True)
class Citation:
    """A retrieved source of a RAG answer; `index` is the number the answer cites it by."""

    index: int
    source: str
    title: str
    chunk_id: str
    doc_id: str
    score: float

    @classmethod
    def numbered(cls, hits: Iterable[Hit]) -> list[Citation]:
        return [cls(i, h.source, h.title, h.chunk_id, h.doc_id, h.score) for i, h in enumerate(hits, 1)]

    def wire(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    params: dict  # temperature, top_p, stop: passed to the upstream as they are
    stream: bool
    key: ApiKey | None
    user: str | None = None
    session_id: str | None = None
    use_cache: bool = True
    trace_id: str = field(default_factory=new_trace_id)  # also the completion id: chatcmpl-<trace_id>

    @property
    def rag(self) -> bool:
        return self.model.startswith(RAG_PREFIX)

    @property
    def question(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def key_id(self) -> str:
        return self.key.id if self.key else "anonymous"


def route_wire(decision: RouteDecision) -> dict:
    return {
        "policy": decision.policy,
        "model": decision.model,
        "reason": decision.reason,
        "predicted_quality": decision.predicted_quality,
    }


@dataclass
class Outcome:
    """The answer, filled in step by step."""

    id: str  # chatcmpl-<trace id>
    created: int
    model: str
    text: str = ""
    finish_reason: str = "stop"
    citations: list[Citation] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str = "USD"
    cache: str = "miss"  # miss | exact | semantic | off
    route: RouteDecision | None = None
    prompt: dict | None = None  # {name, version, alias} of the RAG prompt
    fallbacks: list[dict] = field(default_factory=list)
    usage_estimated: bool = False

    @property
    def trace_id(self) -> str:
        return self.id.removeprefix("chatcmpl-")

    def extra(self) -> dict:
        """The documented `ragyard` field of responses (and of the final stream chunk)."""
        return {
            "trace_id": self.trace_id,
            "cost": {"amount": round(self.cost, 10), "currency": self.currency},
            "cache": self.cache,
            "route": route_wire(self.route) if self.route else None,
            "prompt": self.prompt,
            "fallbacks": self.fallbacks,
            "usage_estimated": self.usage_estimated,
        }

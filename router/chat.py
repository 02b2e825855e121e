"""What a chat completion asks and answers, typed as the flow's steps hand it on: messages, the
request, citations, the outcome. `wire()` gives each the JSON shape it has in responses, caches
and OpenAI's API.

Model names: ``ragyard/auto`` (RAG, routed by the policy in settings), ``ragyard/<catalog model>``
(RAG on that model), a plain catalog model (no retrieval: the messages go to the model as they are).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ragyard.contracts.retriever import Hit
from ragyard.tokens import MAX_TOOLS_TEMPLATE_TOKENS
from router.keys import ApiKey
from router.routing.base import RouteDecision
from router.tracing import new_trace_id

RAG_PREFIX = "ragyard/"
AUTO = "ragyard/auto"


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[dict, ...] = ()  # an assistant's calls, OpenAI's shape (arguments a JSON string)
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None

    @classmethod
    def of(cls, wire: Mapping) -> Message:
        return cls(
            str(wire["role"]),
            str(wire.get("content") or ""),
            tuple(wire.get("tool_calls") or ()),
            wire.get("tool_call_id"),
            wire.get("name"),
        )

    def wire(self) -> dict:
        wire: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            wire["tool_calls"] = list(self.tool_calls)
            wire["content"] = self.content or None
        for optional in ("tool_call_id", "name"):
            if getattr(self, optional) is not None:
                wire[optional] = getattr(self, optional)
        return wire

    @property
    def counted_text(self) -> str:
        """What the model reads of this message, for token estimates: its content and its calls."""
        return self.content + (json.dumps(self.tool_calls) if self.tool_calls else "")


def wire_messages(messages: Iterable[Message]) -> list[dict]:
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
    params: dict  # temperature, top_p, stop, tools...: passed to the upstream as they are
    stream: bool
    key: ApiKey | None
    user: str | None = None
    session_id: str | None = None
    use_cache: bool = True
    memory: bool = True  # long-term memory (the memory bento); false: the request opts out
    metadata: dict[str, str] = field(default_factory=dict)  # the client's, recorded on the trace
    trace_id: str = field(default_factory=new_trace_id)  # also the completion id: chatcmpl-<trace_id>

    @property
    def rag(self) -> bool:
        return self.model.startswith(RAG_PREFIX)

    @property
    def tools(self) -> list[dict]:
        return self.params.get("tools") or []

    @property
    def uses_tools(self) -> bool:
        """Tools offered, or a conversation with calls in it: no cached answer fits it."""
        return bool(self.tools) or any(m.tool_calls or m.role == "tool" for m in self.messages)

    @property
    def tools_bytes(self) -> int:
        """At most this many bytes (so tokens) of tool definitions, and the template's words about
        them, come with the messages."""
        return len(json.dumps(self.tools).encode()) + MAX_TOOLS_TEMPLATE_TOKENS if self.tools else 0

    @property
    def chooses_tools(self) -> bool:
        """The model is offered tools and chooses whether to call one (a forced call needs no choice)."""
        return bool(self.tools) and self.params.get("tool_choice") in (None, "auto")

    @property
    def question(self) -> str:
        return next((m.content for m in reversed(self.messages) if m.role == "user"), "")

    @property
    def key_id(self) -> str:
        return self.key.id if self.key else "anonymous"


@dataclass(frozen=True)
class ToolCalls:
    """The answer's tool calls in a stream, whole and checked (OpenAI's shape)."""

    calls: list[dict]


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
    tool_calls: list[dict] = field(default_factory=list)
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
    memory: dict | None = None  # long-term memory: {used: [ids], tokens} or why none; None: not asked
    held_for_review: bool = False  # the output policy withheld the answer until a reviewer approves it
    grounding: dict | None = None  # RAG answers: {claims, unsupported, score} (ragyard/grounding.py)

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
            "memory": self.memory,
            "held_for_review": self.held_for_review,
            "grounding": self.grounding,
        }

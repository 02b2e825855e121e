"""The model abstraction layer: every backend chats, streams, counts prompt tokens and knows its context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Generation:
    """What to generate: OpenAI-shaped messages and sampling parameters, already validated and capped."""

    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logit_bias: dict[int, float] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class Piece:
    """One increment of a streamed answer."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


# The pieces of one answer, then its usage; closing the generator stops the model at once.
Stream = AsyncGenerator[Piece | TokenUsage, None]


class ChatBackend(ABC):
    """A loaded model. `generate` yields `Piece`s then one `TokenUsage`; closing it stops the model."""

    kind: ClassVar[str]
    self_hosted: ClassVar[bool]  # priced from measured throughput and the machine's cost
    # Renders the chat template itself, so its model writes tool calls as text that
    # `bentos.llm.tool_calls` parses (a provider returns them parsed).
    renders_chat: ClassVar[bool]
    context_length: int

    @property
    def supports_tools(self) -> bool:
        """Whether the model sees the tools it is offered, and so can choose among them (the catalog
        entry's `supports_tools` overrides this)."""
        return True

    @abstractmethod
    async def count_prompt_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> int | None:
        """Prompt tokens after the chat template; None when this backend cannot count locally."""

    @abstractmethod
    def generate(self, request: Generation, prompt_tokens: int | None) -> Stream:
        """Stream the answer; `prompt_tokens` is what `count_prompt_tokens` said."""

    async def aclose(self) -> None:  # noqa: B027 - optional: only backends holding something override it
        """Release the model (connections, engine); the default has nothing to release."""

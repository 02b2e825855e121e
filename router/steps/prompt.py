"""The prompt: the RAG template from the MLflow prompt registry (weighted alias, sticky per user; the
built-in template when MLflow is unreachable), and the messages the model gets."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from ragyard.contracts.retriever import Hit
from ragyard.settings import RouterSettings
from router.chat import Message
from router.prompts import PromptResolver, ResolvedPrompt
from router.rag_prompt import rag_messages
from router.turn import Turn


class PromptStep:
    def __init__(self, resolver: PromptResolver, config: RouterSettings):
        self.resolver = resolver
        self.config = config

    async def load(self, turn: Turn) -> ResolvedPrompt | None:
        """The RAG prompt, recorded with its version in the outcome and the trace; None without RAG."""
        if not turn.request.rag:
            return None
        with turn.step("prompt") as span:
            prompt = await anyio.to_thread.run_sync(self.resolver.resolve, None, turn.request.user)
            span.attributes.update({"name": prompt.name, "version": prompt.version, "alias": prompt.alias})
        turn.outcome.prompt = {"name": prompt.name, "version": prompt.version, "alias": prompt.alias}
        return prompt

    def messages(
        self, turn: Turn, prompt: ResolvedPrompt | None, hits: Sequence[Hit], history: Sequence[Message]
    ) -> list[Message]:
        """RAG: the rendered prompt around history and the request; else history and the request as they are."""
        request = turn.request
        if prompt is None:
            return [*history, *request.messages]
        return rag_messages(prompt, hits, history, request.messages, self.config.max_context_chars)

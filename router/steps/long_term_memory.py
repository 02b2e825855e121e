"""Long-term memory (the memory bento): the user's relevant memories before the answer, the exchange sent
for extraction after it. Only for requests that name a `user` (OpenAI's field), scoped by the API key (the
key's id now, its tenant with issue 16), unless the request opts out (``ragyard: {"memory": false}``). A
memory bento that is down costs the answer its memories, never the answer: the `ragyard` field says so.
"""

from __future__ import annotations

from ragyard.clients.memory import MemoryClient
from ragyard.settings import RouterSettings
from router import metrics
from router.chat import ChatRequest, Message
from router.memory_context import MemoryContext, recall
from router.memory_sender import Exchange, ExchangeSender
from router.turn import Turn


class LongTermMemory:
    """`client` None: long-term memory is off (router.long_term_memory false)."""

    def __init__(self, client: MemoryClient | None, config: RouterSettings):
        self.client = client
        self.config = config
        self.sender = ExchangeSender(client, config.memory_queue_size) if client is not None else None

    @staticmethod
    def scope(request: ChatRequest) -> str:
        return request.key_id

    async def recall(self, turn: Turn) -> list[Message]:
        """The memory block as a system message (none when no memory is used), for the reservation and the
        cache key to count; `PromptStep` puts it in the prompt's system message (`with_memories`)."""
        request = turn.request
        if self.client is None or not request.user:
            return []
        if not request.memory:
            turn.outcome.memory = {"used": [], "opted_out": True}
            metrics.MEMORY_RECALLS.labels(outcome="opted_out").inc()
            return []
        with turn.step("long_term_memory") as span:
            try:
                context = await turn.guard(
                    recall(
                        self.client,
                        self.scope(request),
                        request.user,
                        request.question,
                        self.config.memory_budget_tokens,
                        self.config.memory_top_k,
                        self.config.memory_timeout_s,
                    ),
                    self.config.memory_timeout_s,
                )
            except TimeoutError:
                context = MemoryContext(
                    error=f"the memory bento did not answer within {self.config.memory_timeout_s:g} s"
                )
            span.attributes.update(context.record())
        turn.outcome.memory = context.record()
        turn.trace.attributes["memory.used"] = context.ids
        outcome = "unavailable" if context.error else "used" if context.ids else "none"
        metrics.MEMORY_RECALLS.labels(outcome=outcome).inc()
        return [Message("system", context.block)] if context.block else []

    def remember(self, turn: Turn) -> None:
        """Queue the answered exchange for extraction (off the request path)."""
        request = turn.request
        if self.sender is None or not request.user or not request.memory or not request.question:
            return
        self.sender.submit(Exchange(self.scope(request), request.user, request.question, turn.kept_text()))

    async def aclose(self) -> None:
        if self.sender is not None:
            await self.sender.close()

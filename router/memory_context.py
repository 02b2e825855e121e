"""Long-term memories in the prompt: the user's most relevant memories (memory bento), as many as fit a
token budget (the one estimate of `ragyard.tokens`), rendered as a block of the system message; and which
ones were used, for the response's `ragyard` field and the trace.

A memory bento that cannot answer costs the answer its memories, never the answer itself: the context is
then empty and says why (`error`), for the response and the trace to say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ragyard.clients.memory import MemoryClient
from ragyard.contracts.memory import MemoryHit
from ragyard.kit.errors import Rejected, Unavailable
from ragyard.tokens import estimate_tokens
from router.chat import Message

HEADER = (
    "What the user told you in earlier conversations (the date is when it was noted; a later fact "
    "overrides an earlier one). Use it when the question is about the user:"
)


def memory_line(hit: MemoryHit) -> str:
    return f"- [{time.strftime('%Y-%m-%d', time.gmtime(hit.updated_at))}] {hit.text}"


@dataclass(frozen=True)
class MemoryContext:
    block: str = ""  # the rendered memories; "" when none are used
    ids: list[str] = field(default_factory=list)  # the memories used, most relevant first
    tokens: int = 0  # the block's estimated tokens
    error: str | None = None  # why no memories could be had (the memory bento down, a refused request)

    def record(self) -> dict:
        """For the response's `ragyard` field and the trace."""
        return {"used": self.ids, "tokens": self.tokens, **({"error": self.error} if self.error else {})}


def select(
    hits: Sequence[MemoryHit], budget_tokens: int, count_tokens: Callable[[str], int] = estimate_tokens
) -> MemoryContext:
    """The hits, in their order of relevance, that fit the budget together with the header: a memory
    too long for what is left is skipped and the next one tried."""
    lines, ids = [], []
    used = count_tokens(HEADER)
    for hit in hits:
        line = memory_line(hit)
        cost = count_tokens(line) + 1  # and its line break
        if used + cost <= budget_tokens:
            lines.append(line)
            ids.append(hit.id)
            used += cost
    if not lines:
        return MemoryContext()
    return MemoryContext("\n".join([HEADER, *lines]), ids, used)


async def recall(
    client: MemoryClient, scope: str, user: str, question: str, budget_tokens: int, top_k: int, timeout_s: float
) -> MemoryContext:
    """The user's memories most relevant to `question` within `budget_tokens`."""
    try:
        found = await client.search(scope, user, question, top_k=top_k, timeout_s=timeout_s)
    except (Unavailable, Rejected) as exc:
        return MemoryContext(error=str(exc))
    return select(found.memories, budget_tokens)


def with_memories(messages: list[Message], memories: Sequence[Message]) -> list[Message]:
    """The prompt's messages with the memory block (`memories`: none or one system message) at the end of
    its first system message, or first when it has none: one system message, as every chat template
    accepts."""
    if not memories:
        return messages
    block = "\n\n".join(m.content for m in memories)
    if messages and messages[0].role == "system":
        first = messages[0]
        return [Message("system", f"{first.content}\n\n{block}", name=first.name), *messages[1:]]
    return [Message("system", block), *messages]

"""The prompt side of long-term memory (router/memory_context.py): which memories fit the token budget, and
where their block goes in the prompt."""

from __future__ import annotations

from ragyard.contracts.memory import MemoryHit
from ragyard.tokens import estimate_tokens
from router.chat import Message
from router.memory_context import HEADER, MemoryContext, select, with_memories

# ---- the prompt's memory block -----------------------------------------------------------------------


def hit(memory_id: str, text: str) -> MemoryHit:
    return MemoryHit(
        id=memory_id, text=text, origin="text", created_at=0, updated_at=1_780_000_000, expires_at=None, score=1.0
    )


def test_memories_are_chosen_in_order_within_the_budget():
    hits = [
        hit("a", "User lives in Berlin."),
        hit("b", "User " + "really " * 60 + "likes tea."),
        hit("c", "User is a paramedic."),
    ]
    budget = estimate_tokens(HEADER) + 2 * (estimate_tokens("- [2026-05-28] User lives in Berlin.") + 1) + 1
    context = select(hits, budget)
    assert context.ids == ["a", "c"]  # b does not fit what is left; c still does
    assert context.tokens <= budget
    assert context.block.splitlines() == [
        HEADER,
        "- [2026-05-28] User lives in Berlin.",
        "- [2026-05-28] User is a paramedic.",
    ]
    assert select(hits, estimate_tokens(HEADER)) == MemoryContext()


def test_the_block_joins_the_first_system_message_or_becomes_one():
    context = select([hit("a", "User lives in Berlin.")], 500)
    memories = [Message("system", context.block)]
    rag = [Message("system", "Answer from the passages."), Message("user", "Where?")]
    assert with_memories(rag, memories) == [Message("system", f"Answer from the passages.\n\n{context.block}"), rag[1]]
    bare = [Message("user", "Where do I live?")]
    assert with_memories(bare, memories) == [Message("system", context.block), *bare]
    assert with_memories(bare, []) == bare
    assert MemoryContext(error="down").record() == {"used": [], "tokens": 0, "error": "down"}
    assert context.record() == {"used": ["a"], "tokens": context.tokens}

"""Turning retrieved chunks into a chat prompt, and numbered references into citations.

The prompt template comes from the MLflow prompt registry (`router.prompts`: name@alias, with the
built-in template when MLflow is unreachable); it takes {{context}} and {{question}}.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragyard.contracts.retriever import Hit
from router.chat import Citation, Message
from router.prompts import ResolvedPrompt


def template_bytes(prompt: ResolvedPrompt) -> int:
    return sum(len(m["content"].encode("utf-8")) for m in prompt.template)


def numbered_context(hits: Sequence[Hit], max_chars: int) -> str:
    return "\n\n".join(f"[{i}] {hit.title}\n{hit.text[:max_chars]}" for i, hit in enumerate(hits, 1))


def rag_messages(
    prompt: ResolvedPrompt, hits: Sequence[Hit], history: Sequence[Message], messages: Sequence[Message], max_chars: int
) -> list[Message]:
    """The rendered prompt with numbered sources; remembered turns and the request's earlier
    messages go between the template's leading messages and its last one (the question)."""
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    rendered = [
        Message.of(m)
        for m in prompt.render(context=numbered_context(hits, max_chars), question=messages[last_user].content)
    ]
    earlier = [m for i, m in enumerate(messages) if i != last_user]
    return [*rendered[:-1], *history, *earlier, rendered[-1]]


def cited_numbers(answer: str, count: int) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\[(\d{1,2})\]", answer) if 1 <= int(n) <= count})


def references_block(answer: str, citations: Sequence[Citation]) -> str:
    """The numbered references appended to a RAG answer: those the answer cites, else all sources."""
    used = set(cited_numbers(answer, len(citations))) or {c.index for c in citations}
    lines = [f"[{c.index}] {c.title} ({c.source}, {c.chunk_id})" for c in citations if c.index in used]
    return "\n\nReferences:\n" + "\n".join(lines) if lines else ""

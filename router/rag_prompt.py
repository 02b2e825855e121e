"""Turning retrieved chunks into a chat prompt, and numbered references into citations.

The prompt template comes from the MLflow prompt registry (`router.prompts`: name@alias, with the
built-in template when MLflow is unreachable); it takes {{context}} and {{question}}.
"""

from __future__ import annotations

import re

from router.prompts import ResolvedPrompt


def template_bytes(prompt: ResolvedPrompt) -> int:
    return sum(len(m["content"].encode("utf-8")) for m in prompt.template)


def numbered_context(hits: list[dict], max_chars: int) -> str:
    return "\n\n".join(f"[{i}] {hit['title']}\n{hit['text'][:max_chars]}" for i, hit in enumerate(hits, 1))


def rag_messages(prompt: ResolvedPrompt, hits: list[dict], history: list[dict], messages: list[dict],
                 max_chars: int) -> list[dict]:
    """The rendered prompt with numbered sources; remembered turns and the request's earlier
    messages go between the template's leading messages and its last one (the question)."""
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    rendered = prompt.render(context=numbered_context(hits, max_chars), question=messages[last_user]["content"])
    earlier = [m for i, m in enumerate(messages) if i != last_user]
    return [*rendered[:-1], *history, *earlier, rendered[-1]]


def citations(hits: list[dict]) -> list[dict]:
    return [{"index": i, "source": h["source"], "title": h["title"], "chunk_id": h["chunk_id"],
             "doc_id": h["doc_id"], "score": h["score"]} for i, h in enumerate(hits, 1)]


def cited_numbers(answer: str, count: int) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\[(\d{1,2})\]", answer) if 1 <= int(n) <= count})


def references_block(answer: str, cites: list[dict]) -> str:
    """The numbered references appended to a RAG answer: those the answer cites, else all sources."""
    used = set(cited_numbers(answer, len(cites))) or {c["index"] for c in cites}
    lines = [f"[{c['index']}] {c['title']} ({c['source']}, {c['chunk_id']})" for c in cites if c["index"] in used]
    return "\n\nReferences:\n" + "\n".join(lines) if lines else ""

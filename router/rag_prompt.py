"""Turning retrieved chunks into a chat prompt, and numbered references into citations.

The prompt text comes from the MLflow prompt registry (`router.prompts`, name@alias); when the
registry cannot be reached the flow uses `BUILTIN_PROMPT` and records version "builtin" in the
trace, so an MLflow outage never fails a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    # A system message with {context}; the question is the user's own last message.
    system: str

    def render(self, context: str) -> str:
        return self.system.replace("{context}", context)


BUILTIN_PROMPT = PromptTemplate(
    name="ragyard-rag",
    version="builtin",
    system=(
        "You answer questions using only the numbered sources below. Cite the sources you use with "
        "their numbers in square brackets, like [1]. If the sources do not contain the answer, say so.\n\n"
        "Sources:\n{context}"
    ),
)


def numbered_context(hits: list[dict], max_chars: int) -> str:
    return "\n\n".join(f"[{i}] {hit['title']}\n{hit['text'][:max_chars]}" for i, hit in enumerate(hits, 1))


def rag_messages(template: PromptTemplate, hits: list[dict], history: list[dict], messages: list[dict],
                 max_chars: int) -> list[dict]:
    """System prompt with numbered sources, then the remembered turns, then the request's messages
    (a system message of the caller's is kept after ours)."""
    return [{"role": "system", "content": template.render(numbered_context(hits, max_chars))}, *history, *messages]


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

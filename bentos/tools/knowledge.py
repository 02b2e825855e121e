"""Knowledge-base search: the retriever bento's hybrid search, with its metadata filters, through
`ragyard.clients.retriever`."""

from __future__ import annotations

from typing import Any

import httpx

from bentos.tools.errors import InvalidArguments, ToolUnavailable
from ragyard.clients.retriever import RetrieverClient
from ragyard.contracts.retriever import SearchRequest
from ragyard.kit.errors import Rejected, Unavailable
from ragyard.settings import ToolsSettings

FILTER_FIELDS = ("source", "doc_id", "path", "title", "section")
DESCRIPTION = (
    "Search the knowledge base (the indexed documentation) for passages relevant to a question; "
    "returns the best passages with their title, source and score."
)


def parameters(max_top_k: int) -> dict[str, Any]:
    value = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
    return {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "What to look for."},
            "top_k": {
                "type": "integer",
                "minimum": 1,
                "maximum": max_top_k,
                "default": min(5, max_top_k),
                "description": "How many passages to return.",
            },
            "filter": {
                "type": "object",
                "properties": {name: value for name in FILTER_FIELDS},
                "additionalProperties": False,
                "description": "Only passages whose metadata equal these values (a list: any of them).",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }


class KnowledgeSearch:
    def __init__(self, retriever_url: str, settings: ToolsSettings, timeout_s: float):
        self.http = httpx.AsyncClient(trust_env=False)
        self.retriever = RetrieverClient(retriever_url, self.http)
        self.settings = settings
        self.timeout_s = timeout_s

    async def run(self, arguments: dict[str, Any]) -> dict[str, Any]:
        request = SearchRequest(
            query=arguments["query"],
            top_k=arguments.get("top_k", min(5, self.settings.kb_max_top_k)),
            mode=self.settings.kb_mode,
            filter=arguments.get("filter", {}),
        )
        try:
            found = await self.retriever.search(request, self.timeout_s)
        except Unavailable as exc:
            raise ToolUnavailable(f"the knowledge base cannot be searched now: {exc}") from None
        except Rejected as exc:  # e.g. a filter value the retriever refuses
            raise InvalidArguments(f"arguments: {exc.error.message}", param="arguments") from None
        limit = self.settings.kb_max_chars_per_hit
        return {
            "hits": [
                {
                    "title": hit.title,
                    "section": hit.section,
                    "source": hit.source,
                    "doc_id": hit.doc_id,
                    "chunk_id": hit.chunk_id,
                    "score": round(hit.score, 4),
                    "text": hit.text if len(hit.text) <= limit else hit.text[:limit] + "...",
                }
                for hit in found.hits
            ]
        }

    async def aclose(self) -> None:
        await self.http.aclose()

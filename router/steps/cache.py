"""The cache step: a reviewer's pinned answer (`router.pinned`), else an answer from the exact cache,
else the semantic cache, before any retrieval or generation; the new answer stored after it. What the
keys cover: `router.cache`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio
import numpy as np

from ragyard.clients.embedder import EmbedderClient
from ragyard.contracts.safety import restore
from ragyard.kit.errors import Rejected, Unavailable
from ragyard.settings import RouterSettings
from router import metrics
from router.cache import CacheHit, CacheKeys, ResponseCache, cache_scope, exact_key
from router.chat import Citation, Message, wire_messages
from router.index_version import IndexVersion
from router.pinned import PinnedAnswers
from router.routing.base import RouteDecision
from router.turn import Turn

CITATION_FIELDS = {field.name for field in dataclasses.fields(Citation)}


class CacheStep:
    def __init__(
        self,
        cache: ResponseCache,
        pinned: PinnedAnswers,
        embedder: EmbedderClient,
        index_version: IndexVersion,
        config: RouterSettings,
    ):
        self.cache = cache
        self.pinned = pinned
        self.embedder = embedder
        self.index_version = index_version
        self.config = config

    async def lookup(self, turn: Turn, history: Sequence[Message]) -> bool:
        """True when the cache answered (the outcome is filled in from it). Without an index version
        nothing is served from the cache, nor stored in it."""
        request, outcome = turn.request, turn.outcome
        # A conversation with tools depends on what the tools return now: never answered from a cache.
        if not (self.config.cache_enabled and request.use_cache) or request.uses_tools:
            outcome.cache = "off"
            return False
        with turn.step("cache_lookup") as span:
            try:
                version = await turn.guard(self.index_version.current(), 5.0) if request.rag else "-"
            except Exception as exc:  # noqa: BLE001 - whatever the reason, the cache is off for this request
                span.attributes["error"] = f"index version unavailable: {exc!r}"[:300]
                outcome.cache = "off"
                return False
            scope = cache_scope(
                request.model,
                request.max_tokens,
                request.params,
                outcome.prompt,
                wire_messages(history),
                wire_messages(request.messages[:-1]),
                version if request.rag else None,
                turn.verdict.placeholders,
            )
            key = exact_key(scope, wire_messages(request.messages))
            vector = None
            turn.index_version = version if request.rag else None
            hit = await self._pinned(request.question, turn.index_version)
            if hit is None:
                hit = await anyio.to_thread.run_sync(self.cache.exact, key)
            if hit is None and request.question:
                try:
                    embedded = await turn.guard(
                        self.embedder.aembed([request.question], self.config.embed_timeout_s),
                        self.config.embed_timeout_s,
                    )
                    vector = np.asarray(embedded.embeddings[0], dtype=np.float32)
                    hit = await anyio.to_thread.run_sync(self.cache.semantic, scope, vector)
                except (TimeoutError, Unavailable, Rejected) as exc:
                    span.attributes["semantic"] = f"skipped: {exc!r}"[:300]
            turn.cache_keys = CacheKeys(scope, key, vector)
            span.attributes.update(
                {
                    "index_version": version,
                    "result": hit.kind if hit else "miss",
                    "similarity": hit.similarity if hit else None,
                }
            )
        metrics.CACHE_LOOKUPS.labels(result=hit.kind if hit else "miss").inc()
        if hit is None:
            return False
        outcome.cache = hit.kind
        outcome.text = restore(hit.payload["text"], turn.verdict.placeholders)
        outcome.citations = [Citation(**c) for c in hit.payload["citations"]]
        outcome.model = hit.payload["model"]
        outcome.finish_reason = hit.payload.get("finish_reason", "stop")
        outcome.prompt = hit.payload.get("prompt")
        outcome.route = RouteDecision(
            hit.payload["model"],
            "cache",
            f"{hit.kind} cache hit (similarity {hit.similarity:.3f}) of: {hit.question[:200]}",
        )
        return True

    async def _pinned(self, question: str | None, index_version: str | None) -> CacheHit | None:
        if not question:
            return None
        pinned = await anyio.to_thread.run_sync(self.pinned.find, question, index_version)
        if pinned is None:
            return None
        # A flag from another producer may carry citations of another shape: left out, never a failure.
        citations = [c for c in pinned.citations if set(c) == CITATION_FIELDS]
        payload = {"text": pinned.text, "citations": citations, "model": pinned.model}
        return CacheHit("pinned", payload, 1.0, f"{question} (review {pinned.review_id})")

    async def store(self, turn: Turn) -> None:
        """Keep a new, complete answer (never one served from the cache, cut short or withheld)."""
        outcome = turn.outcome
        if turn.cache_keys is None or turn.from_cache or outcome.finish_reason not in ("stop", "length"):
            return
        keys = turn.cache_keys
        payload = {
            "text": turn.kept_text(),
            "citations": [c.wire() for c in outcome.citations],
            "model": outcome.model,
            "prompt": outcome.prompt,
            "finish_reason": outcome.finish_reason,
        }
        with turn.step("cache_store"):
            await anyio.to_thread.run_sync(
                self.cache.put, keys.exact_key, keys.scope, turn.request.question, keys.question_vector, payload
            )

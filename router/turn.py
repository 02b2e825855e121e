"""One chat completion in flight, as the flow's steps share it.

A `Turn` holds what every step reads (the request, its trace, its deadline), the answer the steps
fill in (`outcome`), and what the end of the request settles, whether it succeeds or fails: the
budget reservation, the input verdict (whose pseudonyms stay in everything kept), where the answer
goes in the cache, and what the model generated (charged even when the client leaves). Everything
else a step makes it returns, typed, to the flow, which hands it to the steps that need it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from ragyard.contracts.safety import conceal
from router import metrics
from router.cache import CacheKeys
from router.catalog import CatalogEntry
from router.chat import ChatRequest, Message, Outcome
from router.generation import Generated
from router.guardrails import Verdict
from router.limits import Reservation
from router.resilience import Deadline
from router.tracing import Span, Trace

T = TypeVar("T")


@dataclass
class Turn:
    request: ChatRequest  # input safety replaces it by the checked request
    trace: Trace
    deadline: Deadline
    outcome: Outcome
    started: float = field(default_factory=time.perf_counter)
    # What the end of the request settles:
    reservation: Reservation | None = None  # accounting: the budget held, settled once
    verdict: Verdict = field(default_factory=Verdict)  # input safety: what it found and pseudonymized
    output_verdict: Verdict = field(default_factory=Verdict)  # output safety: what it found (a flag is an event)
    cache_keys: CacheKeys | None = None  # the cache step: where the answer goes (None: caches off)
    index_version: str | None = None  # the cache step: the index version the answer is for (RAG, caches on)
    generated: Generated | None = None  # generation: what the models produced, charged in any case
    sources: list[str] = field(default_factory=list)  # retrieval: the passages the answer must keep to

    @classmethod
    def begin(cls, request: ChatRequest, deadline_s: float, currency: str) -> Turn:
        # The trace's input is set once input safety has (maybe) redacted it.
        trace = Trace(
            request.trace_id,
            "chat.completions",
            request.user,
            request.session_id,
            attributes={
                "model.requested": request.model,
                "stream": request.stream,
                "key.id": request.key_id,
                **{f"metadata.{k}": v for k, v in request.metadata.items()},
            },
        )
        outcome = Outcome(
            id=f"chatcmpl-{request.trace_id}", created=int(time.time()), model=request.model, currency=currency
        )
        return cls(request, trace, Deadline(deadline_s), outcome)

    @property
    def from_cache(self) -> bool:
        return self.outcome.cache in ("pinned", "exact", "semantic")

    @property
    def kind(self) -> str:
        return "rag" if self.request.rag else "proxy"

    @contextmanager
    def step(self, name: str, /, **attributes) -> Iterator[Span]:
        """A span of the trace, timed into the step latency histogram."""
        started = time.perf_counter()
        try:
            with self.trace.span(name, **attributes) as span:
                yield span
        finally:
            metrics.STEP_LATENCY.labels(step=name).observe(time.perf_counter() - started)

    async def guard(self, awaitable: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await a step under its timeout, capped by the deadline."""
        return await self.deadline.run(awaitable, timeout_s or self.deadline.left(), "a step")

    def kept_text(self) -> str:
        """The answer as the router keeps it (cache, memory, trace): with the input's pseudonyms,
        never the personal data they stand for."""
        return conceal(self.outcome.text, self.verdict.placeholders)


@dataclass(frozen=True)
class Plan:
    """What to generate, when the cache had no answer: the models to try in order, and the prompt."""

    chain: list[CatalogEntry]
    messages: list[Message]

"""Accounting: a request's worst-case cost reserved against its key before anything runs, its real
cost charged from the generation's usage, and the reservation settled once, when it ends."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import anyio

from ragyard.kit.errors import ServiceError
from ragyard.settings import RouterSettings
from ragyard.tokens import estimate_prompt_tokens, max_prompt_tokens
from router import metrics
from router.catalog import CatalogEntry
from router.chat import ChatRequest, Message, route_wire
from router.generation import Generated
from router.limits import LimitExceeded, Limits
from router.prompts import ResolvedPrompt
from router.rag_prompt import template_bytes
from router.tracing import Generation
from router.turn import Turn


class Accounting:
    def __init__(self, limits: Limits, config: RouterSettings):
        self.limits = limits
        self.config = config

    def worst_case_cost(
        self,
        request: ChatRequest,
        candidates: Sequence[CatalogEntry],
        history: Sequence[Message],
        prompt: ResolvedPrompt | None,
    ) -> float:
        """An upper bound of the request's cost, before anything runs: the prompt's tokens bounded by
        its bytes (`ragyard.tokens`), retrieved context by top_k × max_context_chars, every model that
        may answer (`candidates`, at most 1 + max_fallbacks of them) paid for its prompt (a
        mid-stream continuation re-sends prompt and partial answer), completions total max_tokens;
        at the dearest candidate's prices."""
        extra_bytes = request.tools_bytes
        if request.rag and prompt is not None:
            extra_bytes = template_bytes(prompt) + self.config.top_k * (4 * self.config.max_context_chars + 256)
        prompt_tokens = max_prompt_tokens(
            [m.counted_text for m in (*history, *request.messages)], extra_bytes, extra_messages=1
        )
        attempts = min(len(candidates), 1 + self.config.max_fallbacks)
        in_price = max(e.card.input_per_1k for e in candidates)
        out_price = max(e.card.output_per_1k for e in candidates)
        return (
            in_price * (attempts * prompt_tokens + (attempts - 1) * request.max_tokens) + out_price * request.max_tokens
        ) / 1000

    def window_tokens(self, request: ChatRequest) -> int:
        """Tokens counted against the per-minute window up front: the completion budget plus a
        prompt estimate (the exact count replaces it once the usage is known)."""
        context_chars = self.config.top_k * self.config.max_context_chars if request.rag else 0
        return request.max_tokens + estimate_prompt_tokens(
            [m.counted_text for m in request.messages], context_chars + request.tools_bytes
        )

    async def reserve(
        self, turn: Turn, candidates: Sequence[CatalogEntry], history: Sequence[Message], prompt: ResolvedPrompt | None
    ) -> None:
        """Hold the worst case against the key's budget and count the request in its windows; a 429
        when a limit refuses it."""
        request = turn.request
        if request.key is None:
            return
        worst = self.worst_case_cost(request, candidates, history, prompt)
        tokens = self.window_tokens(request)
        with turn.step("limits", worst_cost=worst, tokens=tokens):
            try:
                turn.reservation = await anyio.to_thread.run_sync(
                    functools.partial(
                        self.limits.reserve, request.key.id, worst, tokens, completion_id=request.trace_id
                    )
                )
            except LimitExceeded as exc:
                metrics.LIMITED.labels(code=exc.code).inc()
                raise ServiceError(
                    429,
                    exc.message,
                    code=exc.code,
                    retry_after_s=exc.retry_after_s,
                    type_="rate_limit_error" if exc.retry_after_s else "insufficient_quota",
                ) from exc

    def charge(self, turn: Turn, generated: Generated) -> None:
        """The answer's model, usage and cost, from the generation; its record in the trace."""
        outcome = turn.outcome
        outcome.model = generated.model
        outcome.finish_reason = generated.finish_reason or "stop"
        outcome.prompt_tokens, outcome.completion_tokens = generated.prompt_tokens, generated.completion_tokens
        outcome.cost = generated.cost
        outcome.fallbacks = generated.fallbacks
        outcome.usage_estimated = generated.usage_estimated
        for failed in generated.fallbacks:
            metrics.FALLBACKS.labels(from_model=failed["model"]).inc()
        trace = turn.trace
        trace.generation = Generation(
            model=generated.model,
            prompt_tokens=generated.prompt_tokens,
            completion_tokens=generated.completion_tokens,
            cost=generated.cost,
            currency=outcome.currency,
            prompt_name=(outcome.prompt or {}).get("name", ""),
            prompt_version=(outcome.prompt or {}).get("version"),
            route=route_wire(outcome.route) if outcome.route else {},
            usage_estimated=generated.usage_estimated,
            start_ns=next((s.start_ns for s in trace.spans if s.name == "generate"), trace.start_ns),
            end_ns=time.time_ns(),
            fallbacks=generated.fallbacks,
        )

    def charge_unfinished(self, turn: Turn) -> None:
        """A request that failed or whose client left pays for what was generated: a stream cut off
        mid-way has its partial attempt priced by the generator (estimated usage)."""
        generated, outcome = turn.generated, turn.outcome
        if generated is not None and not outcome.cost:
            outcome.cost = generated.cost
            outcome.prompt_tokens, outcome.completion_tokens = generated.prompt_tokens, generated.completion_tokens

    async def settle(self, turn: Turn) -> None:
        """Replace the request's budget reservation by its cost, once."""
        if turn.reservation is not None:
            outcome = turn.outcome
            await anyio.to_thread.run_sync(
                self.limits.settle, turn.reservation, outcome.cost, outcome.prompt_tokens + outcome.completion_tokens
            )
            turn.reservation = None

"""The RAG flow of one chat completion, start to end, as the list of its steps (`router.steps`):

    catalog → memory (conversation, long-term) → prompt (registry, name@alias) → limits (reserve the worst-case cost)
    → input safety → cache → retrieve → route → generate (retries, fallbacks) → output safety
    (content, tool calls) → charge → settle the cost, store cache and memory
    (the exchange to the memory bento, off the request path) → trace, metrics

`answer()` returns a whole answer; `stream()` yields content deltas and ends with the same
`Outcome`. Each step runs under its own timeout within the request's deadline and records a span of
the request's trace; a failure at any point still settles the cost and sends the trace, and is
answered as a `ServiceError` (`as_service_error`). The steps are built and wired by
`router.wiring.build_flow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import anyio

from ragyard.contracts.safety import WITHHOLDING, conceal
from ragyard.grounding import Grounding, grounding
from ragyard.kit.errors import Rejected, ServiceError, Unavailable
from ragyard.settings import RouterSettings
from router import metrics
from router.chat import ChatRequest, Citation, Outcome, ToolCalls, route_wire
from router.events import AnsweredTurn, RouterEvents
from router.generation import Generated
from router.guardrails import withheld_text
from router.keys import KeyStore
from router.memory_context import with_memories
from router.rag_prompt import references_block
from router.resilience import DeadlineExceeded
from router.steps.accounting import Accounting
from router.steps.cache import CacheStep
from router.steps.generation import GenerationStep
from router.steps.long_term_memory import LongTermMemory
from router.steps.memory import ConversationMemory
from router.steps.prompt import PromptStep
from router.steps.retrieval import Retrieval
from router.steps.routing import Routing
from router.steps.safety import SafetyChecks
from router.steps.tool_calls import ToolCallChecks
from router.tracing import Tracer
from router.turn import Plan, Turn


@dataclass
class Flow:
    config: RouterSettings
    routing: Routing
    memory: ConversationMemory
    long_term: LongTermMemory
    prompts: PromptStep
    accounting: Accounting
    safety: SafetyChecks
    cache: CacheStep
    retrieval: Retrieval
    generation: GenerationStep
    tool_calls: ToolCallChecks
    tracer: Tracer
    keys: KeyStore  # the service's too: authentication, and who owns a completion
    events: RouterEvents  # feedback and flagged answers on the broker (or its outbox)
    resources: contextlib.AsyncExitStack  # what the wiring opened (connection pool, tracer), closed with the flow

    async def answer(self, request: ChatRequest) -> Outcome:
        turn = self.begin(request)
        try:
            plan = await self.prepare(turn)
            if plan is not None:
                generated = turn.generated = await self.generation.complete(turn, plan)
                self.accounting.charge(turn, generated)
                text = await self.safety.check_output(turn, generated.text)
                await self.tool_calls.check(turn, generated)
                turn.outcome.text = text + self.references(turn, generated.text)
            await self.finish(turn)
        # Every ending settles the turn, a cancellation too; `failed` sets the cause of what it returns.
        except BaseException as exc:  # noqa: BLE001
            raise await self.failed(turn, exc)  # noqa: B904
        return turn.outcome

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | ToolCalls | Outcome, None]:
        """Content deltas (str), the checked tool calls, then the Outcome. Every refusal comes before
        the first delta."""
        turn = self.begin(request)
        try:
            plan = await self.prepare(turn)
            if plan is None:
                yield turn.outcome.text
            else:
                generated = turn.generated = Generated()
                released = []
                # aclosing: when the client leaves, the generation is closed at once (and its partial
                # attempt priced) before `failed` settles the reservation, not whenever it is collected.
                deltas = self.generation.stream(turn, plan, generated, self.safety.stream_guard(turn))
                async with contextlib.aclosing(deltas):
                    async for text in deltas:
                        released.append(text)
                        yield text
                self.accounting.charge(turn, generated)
                if calls := await self.tool_calls.check(turn, generated):
                    yield ToolCalls(calls)
                if turn.outcome.finish_reason == "content_filter":
                    released.append(withheld := withheld_text(turn.output_verdict.action))
                    yield withheld
                references = self.references(turn, generated.text)
                if references:
                    yield references
                turn.outcome.text = "".join(released) + references
            await self.finish(turn)
        # Every ending settles the turn, a cancellation too; `failed` sets the cause of what it returns.
        except BaseException as exc:  # noqa: BLE001
            raise await self.failed(turn, exc)  # noqa: B904
        yield turn.outcome  # outside the try: closing the stream after its end is no failure

    def begin(self, request: ChatRequest) -> Turn:
        return Turn.begin(request, self.config.deadline_s, self.config.currency)

    async def prepare(self, turn: Turn) -> Plan | None:
        """Every step up to the generation; None when the cache answered."""
        catalog = await self.routing.models(turn)
        pinned = self.routing.pinned(turn.request, catalog)
        history = await self.memory.history(turn)
        memories = await self.long_term.recall(turn)
        prompt = await self.prompts.load(turn)
        # The memories count with the history: in the reservation, and in the cache key (an answer made
        # with one user's memories is never another's).
        await self.accounting.reserve(turn, self.routing.candidates(catalog, pinned), [*memories, *history], prompt)
        await self.safety.check_input(turn)
        if await self.cache.lookup(turn, [*memories, *history]):
            return None
        hits = await self.retrieval.search(turn) if turn.request.rag else []
        decision = await self.routing.route(turn, catalog, pinned, hits)
        turn.outcome.citations = Citation.numbered(hits)
        turn.sources = [hit.text for hit in hits]
        messages = with_memories(self.prompts.messages(turn, prompt, hits, history), memories)
        return Plan(self.routing.fallback_chain(catalog, decision.model), messages)

    def references(self, turn: Turn, answer: str) -> str:
        """The sources of a RAG answer; none under an answer that calls tools (it is not the last word)."""
        return (
            references_block(answer, turn.outcome.citations) if turn.request.rag and not turn.outcome.tool_calls else ""
        )

    def grounded(self, turn: Turn) -> Grounding | None:
        """The checkable claims of a generated RAG answer against its passages and the user's words;
        None for answers from the cache, withheld ones and tool calls (nothing was stated)."""
        generated = turn.generated
        if not turn.sources or generated is None or turn.outcome.tool_calls:
            return None
        if turn.output_verdict.action in WITHHOLDING:
            return None
        said = [m.content for m in turn.request.messages if m.role == "user"]
        return grounding(generated.text, [*turn.sources, *said])

    def answer_for_review(self, turn: Turn) -> str:
        """The answer a reviewer judges: the model's own, with its sources, where the client got the
        withheld notice instead (kept as the router keeps answers: with the input's pseudonyms)."""
        if turn.output_verdict.action not in WITHHOLDING or turn.generated is None:
            return turn.kept_text()
        generated = turn.generated.text
        return conceal(generated + self.references(turn, generated), turn.verdict.placeholders)

    async def finish(self, turn: Turn) -> None:
        """Settle the cost, store cache and memory, send the trace, count the metrics."""
        outcome = turn.outcome
        await self.accounting.settle(turn)
        await self.cache.store(turn)
        await self.memory.remember(turn)
        self.long_term.remember(turn)
        turn.trace.attributes.update(
            {
                "cache": outcome.cache,
                "cost": outcome.cost,
                "model": outcome.model,
                "route": route_wire(outcome.route) if outcome.route else None,
                "prompt": outcome.prompt,
            }
        )
        turn.trace.finish(output=turn.kept_text())
        self.tracer.submit(turn.trace)
        outcome.held_for_review = turn.output_verdict.action == "review"
        checked = self.grounded(turn)
        if checked is not None:
            outcome.grounding = turn.trace.attributes["grounding"] = checked.wire()
            metrics.GROUNDING.labels(result="unsupported" if checked.unsupported else "grounded").inc()
        await self.events.answered(
            AnsweredTurn(
                turn.request.trace_id,
                turn.trace.input,
                self.answer_for_review(turn),
                [c.wire() for c in outcome.citations],
                outcome.model,
                route_wire(outcome.route) if outcome.route else None,
                turn.request.key_id,
                turn.index_version,
            ),
            turn.output_verdict,
            checked,
        )
        metrics.REQUESTS.labels(kind=turn.kind, status="ok").inc()
        metrics.LATENCY.labels(kind=turn.kind, cache=outcome.cache).observe(time.perf_counter() - turn.started)
        if outcome.prompt_tokens or outcome.completion_tokens:
            metrics.TOKENS.labels(model=outcome.model, direction="input").inc(outcome.prompt_tokens)
            metrics.TOKENS.labels(model=outcome.model, direction="output").inc(outcome.completion_tokens)
            metrics.COST.labels(model=outcome.model, currency=outcome.currency).inc(outcome.cost)

    async def failed(self, turn: Turn, exc: BaseException) -> BaseException:
        """Abandon the request (charge what was generated, settle, trace the error); the exception
        to raise for it: a ServiceError where one fits."""
        error = as_service_error(exc)
        if error is not exc:
            error.__cause__ = exc
        # Shielded: when the client leaves, the server cancels this task, and every await in an
        # unshielded cleanup would be cancelled too, leaving the budget reserved and the cost unpaid.
        with anyio.CancelScope(shield=True):
            self.accounting.charge_unfinished(turn)
            await self.accounting.settle(turn)
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        turn.trace.finish(output=turn.kept_text(), error=str(message)[:500])
        self.tracer.submit(turn.trace)
        status = error.status if isinstance(error, ServiceError) else type(error).__name__
        metrics.REQUESTS.labels(kind=turn.kind, status=str(status)).inc()
        return error

    async def aclose(self) -> None:
        await self.resources.aclose()


def as_service_error(exc: BaseException) -> BaseException:
    """What the client is answered for a failure: a ServiceError (a 503 for a backend that could not
    answer or refused the router's own request, a 504 for time out), or the exception itself when
    it is none of those (a bug: a 500; the client gone)."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, DeadlineExceeded):
        return ServiceError(504, str(exc), code="deadline_exceeded")
    if isinstance(exc, Rejected):
        return Unavailable(f"a backend refused the router's request: {exc}")
    if isinstance(exc, asyncio.TimeoutError):
        return ServiceError(504, "a step of the flow timed out", code="timeout")
    return exc

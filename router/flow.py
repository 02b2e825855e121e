"""The RAG flow of one chat completion, start to end, in the order it runs:

    prompt (registry, name@alias) → limits (reserve the worst-case cost) → input safety → cache
    → retrieve → route → generate (retries, fallbacks) → output safety → settle the cost
    → cache, memory → trace, metrics

Each step is a small method with its own timeout, all capped by the request's overall deadline,
and recorded as a span of the request's trace. `answer()` returns a whole answer; `stream()` yields
content deltas and ends with the same `Outcome`. Failures become `FlowError`s (an HTTP status and
an OpenAI-style error) for the service to send.

Model names: ``ragyard/auto`` (RAG, routed by the policy in settings), ``ragyard/<catalog model>``
(RAG on that model), a plain catalog model (no retrieval: the messages go to the model as they are).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import httpx
import numpy as np

from ragyard.clients.base import ServiceUnavailable
from ragyard.clients.embedder import EmbedderClient
from ragyard.clients.retriever import RetrieverClient
from ragyard.clients.safety import SafetyClient, SafetyRequestRejected, SafetyUnavailable
from ragyard.contracts.retriever import SearchRequest
from ragyard.contracts.safety import conceal, restore
from ragyard.settings import RouterBentoSettings
from router.cache import CacheHit, ResponseCache, cache_scope, exact_key
from router.catalog import Catalog, CatalogEntry, CatalogUnavailable, Upstream
from router.events import RouterEvents
from router.generation import Generated, Generator, UpstreamRejected
from router.guardrails import WITHHELD, Guardrails, InputBlocked, Verdict
from router.index_version import IndexVersion
from router.keys import ApiKey, KeyStore
from router.limits import LimitExceeded, Limits, Reservation
from router.memory import Memory
from router.metrics import router_metrics
from router.output_guard import StreamBlocked
from router.prompts import PromptResolver, ResolvedPrompt
from router.rag_prompt import citations, rag_messages, references_block, template_bytes
from router.resilience import BackendUnavailable, Breakers, Deadline, DeadlineExceeded
from router.routing.base import RouteDecision, RouteRequest, RoutingPolicy
from router.routing.features import routing_features
from router.routing.policies import Strongest, build_policy
from router.state import database
from router.tracing import Generation, Span, Trace, Tracer, new_trace_id, tracer_from_settings

logger = logging.getLogger("ragyard.router.flow")

RAG_PREFIX = "ragyard/"
AUTO = "ragyard/auto"
# Bytes of prompt text that cannot be tokenized into fewer tokens than bytes (byte-level BPE):
# a safe upper bound of prompt tokens, plus the chat template's tokens per message.
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS = 64


class FlowError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.retry_after_s = retry_after_s


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    max_tokens: int
    params: dict  # temperature, top_p, stop: passed to the upstream as they are
    stream: bool
    key: ApiKey | None
    user: str | None = None
    session_id: str | None = None
    use_cache: bool = True
    trace_id: str = field(default_factory=new_trace_id)  # also the completion id: chatcmpl-<trace_id>

    @property
    def rag(self) -> bool:
        return self.model.startswith(RAG_PREFIX)

    @property
    def question(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    @property
    def key_id(self) -> str:
        return self.key.id if self.key else "anonymous"


@dataclass
class Outcome:
    id: str  # chatcmpl-<trace id>
    created: int
    model: str
    text: str = ""
    finish_reason: str = "stop"
    citations: list[dict] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    currency: str = "USD"
    cache: str = "miss"  # miss | exact | semantic | off
    route: dict | None = None
    prompt: dict | None = None
    fallbacks: list[dict] = field(default_factory=list)
    usage_estimated: bool = False

    @property
    def trace_id(self) -> str:
        return self.id.removeprefix("chatcmpl-")

    def extra(self) -> dict:
        """The documented `ragyard` field of responses (and of the final stream chunk)."""
        return {"trace_id": self.trace_id, "cost": {"amount": round(self.cost, 10), "currency": self.currency},
                "cache": self.cache, "route": self.route, "prompt": self.prompt, "fallbacks": self.fallbacks,
                "usage_estimated": self.usage_estimated}


@dataclass
class Prepared:
    """What the steps before generation produced."""

    request: ChatRequest
    trace: Trace
    deadline: Deadline
    outcome: Outcome
    reservation: Reservation | None = None
    hit: CacheHit | None = None
    scope: str = ""
    exact_key: str = ""
    question_vector: np.ndarray | None = None
    chain: list[CatalogEntry] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    generated: Generated | None = None
    prompt: ResolvedPrompt | None = None
    input_verdict: Verdict = field(default_factory=Verdict)
    output_verdict: Verdict = field(default_factory=Verdict)
    started: float = field(default_factory=time.perf_counter)

    def kept_text(self) -> str:
        """The answer as the router keeps it (cache, memory, trace): with the input's pseudonyms,
        never the personal data they stand for."""
        return conceal(self.outcome.text, self.input_verdict.placeholders)


class Flow:
    def __init__(self, settings: RouterBentoSettings, tracer: Tracer | None = None, events: RouterEvents | None = None):
        self.settings = settings
        self.config = settings.router
        self.http = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200))
        upstreams = [Upstream(u.rstrip("/"), self.config.upstream_api_key)
                     for u in [settings.llm.url, *self.config.extra_upstreams]]
        self.catalog = Catalog(upstreams, self.config, self.http)
        self.breakers = Breakers(self.config.breaker_failures, self.config.breaker_reset_s)
        self.generator = Generator(self.breakers, self.config.llm_attempts, self.config.first_token_timeout_s)
        self.retriever = RetrieverClient(settings.retriever.url, self.http)
        self.embedder = EmbedderClient(settings.embedder.url, http=self.http)
        self.keys = KeyStore(database(settings, "keys"))
        self.limits = Limits(self.keys)
        self.cache = ResponseCache(database(settings, "cache"), self.config.cache_ttl_s,
                                   self.config.cache_max_entries, self.config.semantic_threshold)
        self.memory = Memory(database(settings, "memory"), self.config.memory_turns, self.config.memory_sessions_max)
        self.index_version = IndexVersion(self.retriever, self.config.index_version_ttl_s)
        self.tracer = tracer or tracer_from_settings(settings)
        self.events = events  # flagged answers go to the review queue through it (None: not published)
        self.metrics = router_metrics()
        self.prompts = PromptResolver.from_settings(settings)
        self.safety = (Guardrails(SafetyClient(settings.safety.url, timeout=self.config.safety_timeout_s),
                                  self.config.safety_policy) if self.config.safety_enabled else None)
        self.policy: RoutingPolicy | None = None
        self.policy_failed_at = -1e9
        self.policy_error = ""

    # ---- the flow -------------------------------------------------------------------------------

    async def answer(self, request: ChatRequest) -> Outcome:
        prepared = await self.prepare(request)
        try:
            if prepared.hit is None:
                with self.step(prepared, "generate", model=prepared.chain[0].card.name):
                    generated = await self.guard(prepared, self.generator.complete(
                        prepared.chain, prepared.messages, self.upstream_params(request), prepared.deadline))
                prepared.generated = generated
                self.account(prepared, generated)
                text = await self.check_output(prepared, generated.text)
                prepared.outcome.text = text + self.references(prepared, generated.text)
            await self.finish(prepared)
        except BaseException as exc:
            raise await self.failed(prepared, exc)
        return prepared.outcome

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Outcome]:
        """Content deltas (str), then the Outcome. Errors before the first delta are FlowErrors."""
        prepared = await self.prepare(request)
        try:
            if prepared.hit is not None:
                yield prepared.outcome.text
            else:
                generated = prepared.generated = Generated()
                released = []
                # aclosing: when the client leaves, the generation is closed at once (and its partial
                # attempt priced) before `failed` settles the reservation, not whenever it is collected.
                async with contextlib.aclosing(self.generate_stream(prepared, generated)) as deltas:
                    async for text in deltas:
                        released.append(text)
                        yield text
                self.account(prepared, generated)
                if prepared.outcome.finish_reason == "content_filter":
                    released.append(WITHHELD)
                    yield WITHHELD
                refs = self.references(prepared, generated.text)
                if refs:
                    yield refs
                prepared.outcome.text = "".join(released) + refs
            await self.finish(prepared)
        except BaseException as exc:
            raise await self.failed(prepared, exc)
        yield prepared.outcome  # outside the try: closing the stream after its end is no failure

    async def prepare(self, request: ChatRequest) -> Prepared:
        """Every step up to the generation: prompt, limits, input safety, cache, retrieval, route."""
        trace_id = request.trace_id
        # The trace's input is set once input safety has (maybe) redacted it.
        trace = Trace(trace_id, "chat.completions", request.user, request.session_id,
                      attributes={"model.requested": request.model, "stream": request.stream,
                                  "key.id": request.key_id})
        outcome = Outcome(id=f"chatcmpl-{trace_id}", created=int(time.time()), model=request.model,
                          currency=self.config.currency)
        prepared = Prepared(request, trace, Deadline(self.config.deadline_s), outcome)
        try:
            catalog = await self.load_catalog(prepared)
            pinned = self.pinned_model(request, catalog)
            history = await anyio.to_thread.run_sync(self.memory.history, request.session_id, request.key_id) \
                if request.session_id else []
            if request.rag:
                prepared.prompt = await self.load_prompt(prepared)
            await self.reserve(prepared, catalog, pinned, history)
            await self.check_input(prepared)
            if await self.lookup_cache(prepared, history):
                return prepared
            hits = await self.retrieve(prepared) if request.rag else []
            decision = await self.route(prepared, catalog, pinned, hits)
            prepared.chain = self.fallback_chain(catalog, decision.model)
            outcome.citations = citations(hits)
            prepared.messages = (rag_messages(prepared.prompt, hits, history, request.messages,
                                              self.config.max_context_chars)
                                 if request.rag else [*history, *request.messages])
            return prepared
        except BaseException as exc:
            raise await self.failed(prepared, exc)

    # ---- steps ----------------------------------------------------------------------------------

    @contextmanager
    def step(self, prepared: Prepared, name: str, /, **attributes) -> Iterator[Span]:
        """A span of the trace, timed into the step latency histogram."""
        started = time.perf_counter()
        try:
            with prepared.trace.span(name, **attributes) as span:
                yield span
        finally:
            self.metrics.step_latency.labels(step=name).observe(time.perf_counter() - started)

    async def guard(self, prepared: Prepared, awaitable, timeout_s: float | None = None):
        """Await a step under its timeout, capped by the deadline."""
        return await prepared.deadline.run(awaitable, timeout_s or prepared.deadline.left(), "a step")

    async def load_catalog(self, prepared: Prepared) -> dict[str, CatalogEntry]:
        with self.step(prepared, "catalog"):
            return await self.guard(prepared, self.catalog.current(), 10.0)

    def pinned_model(self, request: ChatRequest, catalog: dict[str, CatalogEntry]) -> str | None:
        """The catalog model a request names (None for ragyard/auto); 404 for an unknown one."""
        if request.model == AUTO:
            return None
        name = request.model.removeprefix(RAG_PREFIX)
        if name not in catalog:
            known = ", ".join([AUTO, *(f"{RAG_PREFIX}{n}" for n in catalog), *catalog])
            raise FlowError(404, f"model: {request.model!r} is not served here; choose one of {known}",
                            param="model", code="model_not_found")
        return name

    def worst_case_cost(self, prepared: Prepared, catalog: dict[str, CatalogEntry], pinned: str | None,
                        history: list[dict]) -> float:
        """An upper bound of this request's cost, before anything runs: prompt tokens are
        at most the prompt's UTF-8 bytes (plus template tokens), retrieved context is bounded by
        top_k × max_context_chars, every model of the fallback chain may be paid for its prompt
        (a mid-stream continuation re-sends prompt and partial answer), completions total max_tokens."""
        request = prepared.request
        texts = [str(m.get("content", "")) for m in [*history, *request.messages]]
        prompt_bytes = sum(len(t.encode("utf-8")) for t in texts)
        if request.rag:
            prompt_bytes += template_bytes(prepared.prompt)
            prompt_bytes += self.config.top_k * (4 * self.config.max_context_chars + 256)  # 4 bytes/char worst
        prompt_tokens = prompt_bytes + TEMPLATE_TOKENS + TEMPLATE_TOKENS_PER_MESSAGE * (len(texts) + 1)
        # Routed requests may end up on any model: price them at the catalog's dearest.
        chain = self.fallback_chain(catalog, pinned) if pinned else list(catalog.values())
        attempts = min(len(chain), 1 + self.config.max_fallbacks)
        in_price = max(e.card.input_per_1k for e in chain)
        out_price = max(e.card.output_per_1k for e in chain)
        return (in_price * (attempts * prompt_tokens + (attempts - 1) * request.max_tokens)
                + out_price * request.max_tokens) / 1000

    async def reserve(self, prepared: Prepared, catalog, pinned, history) -> None:
        request = prepared.request
        if request.key is None:
            return
        worst = self.worst_case_cost(prepared, catalog, pinned, history)
        tokens = self.window_tokens(request)
        with self.step(prepared, "limits", worst_cost=worst, tokens=tokens):
            try:
                prepared.reservation = await anyio.to_thread.run_sync(functools.partial(
                    self.limits.reserve, request.key.id, worst, tokens, completion_id=request.trace_id))
            except LimitExceeded as exc:
                self.metrics.limited.labels(code=exc.code).inc()
                raise FlowError(429, exc.message, "rate_limit_error" if exc.retry_after_s else "insufficient_quota",
                                code=exc.code, retry_after_s=exc.retry_after_s) from exc

    def window_tokens(self, request: ChatRequest) -> int:
        """Tokens counted against the per-minute window up front: the completion budget plus a
        prompt estimate (the exact count replaces it once the usage is known)."""
        prompt_chars = sum(len(str(m.get("content", ""))) for m in request.messages)
        extra = self.config.top_k * self.config.max_context_chars if request.rag else 0
        return request.max_tokens + (prompt_chars + extra) // 4

    async def check_input(self, prepared: Prepared) -> None:
        """Block, redact or flag the user's messages; what follows only sees the checked text."""
        request = prepared.request
        if self.safety is not None:
            with self.step(prepared, "input_safety", policy=self.config.safety_policy) as span:
                try:
                    request.messages, prepared.input_verdict = await self.guard(
                        prepared, self.safety.check_input(request.messages), self.config.safety_timeout_s)
                except InputBlocked as exc:
                    span.attributes.update({"action": "block", "categories": exc.categories})
                    raise FlowError(400, f"messages: refused by the safety policy ({', '.join(exc.categories)})",
                                    param="messages", code="content_filter") from exc
                except SafetyRequestRejected as exc:
                    raise FlowError(400 if exc.status_code != 413 else 413, f"messages: {exc.message}",
                                    param="messages", code="invalid_value") from exc
                except (SafetyUnavailable, asyncio.TimeoutError) as exc:  # fail closed
                    raise BackendUnavailable(f"safety check unavailable: {exc}") from exc
                span.attributes.update(prepared.input_verdict.attributes())
        prepared.trace.input = request.question

    async def check_output(self, prepared: Prepared, text: str) -> str:
        """The whole answer as the client may see it: redacted, or withheld when blocked."""
        if self.safety is None:
            return text
        with self.step(prepared, "output_safety", policy=self.config.safety_policy) as span:
            try:
                checked, verdict = await self.guard(
                    prepared, self.safety.check_output(text, prepared.input_verdict.placeholders),
                    self.config.safety_timeout_s)
            except (SafetyUnavailable, SafetyRequestRejected, asyncio.TimeoutError) as exc:
                raise BackendUnavailable(f"safety check of the answer unavailable: {exc}") from exc
            span.attributes.update(verdict.attributes())
        prepared.output_verdict = verdict
        if verdict.action == "block":
            prepared.outcome.finish_reason = "content_filter"
        return checked

    async def generate_stream(self, prepared: Prepared, generated: Generated) -> AsyncIterator[str]:
        """The model's deltas, through the safety bento's streaming guard; a block ends the stream
        with finish_reason content_filter."""
        request = prepared.request
        guard = (self.safety.stream_guard(prepared.input_verdict.placeholders, prepared.output_verdict)
                 if self.safety else None)
        with self.step(prepared, "generate", model=prepared.chain[0].card.name, stream=True) as span:
            deltas = self.generator.stream(prepared.chain, prepared.messages, self.upstream_params(request),
                                           prepared.deadline, generated)
            try:
                async with contextlib.aclosing(deltas):
                    async for delta in deltas:
                        text = await guard.feed(delta) if guard else delta
                        if text:
                            yield text
                    if guard and (tail := await guard.finish()):
                        yield tail
            except StreamBlocked as exc:
                generated.finish_reason = "content_filter"
                span.attributes["blocked"] = sorted({f.category for f in exc.response.findings})
            except (SafetyUnavailable, SafetyRequestRejected) as exc:
                raise BackendUnavailable(f"safety check of the answer unavailable: {exc}") from exc
            if guard:
                span.attributes["output_safety"] = sorted({f.category for f in guard.findings})

    async def lookup_cache(self, prepared: Prepared, history: list[dict]) -> bool:
        """True on a hit (the outcome is filled in from it)."""
        request = prepared.request
        if not (self.config.cache_enabled and request.use_cache):
            prepared.outcome.cache = "off"
            return False
        with self.step(prepared, "cache_lookup") as span:
            try:
                version = await self.guard(prepared, self.index_version.current(), 5.0) if request.rag else "-"
            except Exception as exc:  # noqa: BLE001 - without an index version nothing may be served from cache
                span.attributes["error"] = f"index version unavailable: {exc!r}"[:300]
                prepared.outcome.cache = "off"
                return False
            prepared.scope = cache_scope(request.model, request.max_tokens, request.params, prepared.outcome.prompt,
                                         history, request.messages[:-1], version if request.rag else None,
                                         prepared.input_verdict.placeholders)
            prepared.exact_key = exact_key(prepared.scope, request.messages)
            hit = await anyio.to_thread.run_sync(self.cache.exact, prepared.exact_key)
            if hit is None and request.question:
                try:
                    embedded = await self.guard(
                        prepared, self.embedder.aembed([request.question], self.config.embed_timeout_s),
                        self.config.embed_timeout_s)
                    prepared.question_vector = np.asarray(embedded.embeddings[0], dtype=np.float32)
                    hit = await anyio.to_thread.run_sync(self.cache.semantic, prepared.scope, prepared.question_vector)
                except (ServiceUnavailable, asyncio.TimeoutError) as exc:
                    span.attributes["semantic"] = f"skipped: {exc!r}"[:300]
            span.attributes.update({"index_version": version, "result": hit.kind if hit else "miss",
                                    "similarity": hit.similarity if hit else None})
        self.metrics.cache.labels(result=hit.kind if hit else "miss").inc()
        if hit is None:
            return False
        prepared.hit = hit
        outcome = prepared.outcome
        outcome.cache = hit.kind
        outcome.text = restore(hit.payload["text"], prepared.input_verdict.placeholders)
        outcome.citations = hit.payload["citations"]
        outcome.model = hit.payload["model"]
        outcome.finish_reason = hit.payload.get("finish_reason", "stop")
        outcome.prompt = hit.payload.get("prompt")
        outcome.route = {"policy": "cache", "model": hit.payload["model"],
                         "reason": f"{hit.kind} cache hit (similarity {hit.similarity:.3f}) of: {hit.question[:200]}"}
        return True

    async def retrieve(self, prepared: Prepared) -> list[dict]:
        request = prepared.request
        search = SearchRequest(query=request.question or request.messages[-1]["content"], top_k=self.config.top_k,
                               mode=self.config.retrieval_mode)
        timeout_s = self.config.retrieve_timeout_s
        with self.step(prepared, "retrieve", top_k=search.top_k, mode=search.mode) as span:
            try:
                response = await self.guard(prepared, self.retriever.search(search, timeout_s), timeout_s)
            except asyncio.TimeoutError as exc:  # e.g. a restarting bento: its port accepts, nothing answers yet
                raise BackendUnavailable(f"retriever at {self.retriever.url} did not answer within {timeout_s:g} s") \
                    from exc
            span.attributes["chunk_ids"] = [h.chunk_id for h in response.hits]
        return [h.model_dump() for h in response.hits]

    async def load_prompt(self, prepared: Prepared) -> ResolvedPrompt:
        """The RAG prompt from the MLflow registry (weighted alias, sticky per user; the built-in
        template when MLflow is unreachable), recorded with its version in the trace."""
        with self.step(prepared, "prompt") as span:
            prompt = await anyio.to_thread.run_sync(self.prompts.resolve, None, prepared.request.user)
            span.attributes.update({"name": prompt.name, "version": prompt.version, "alias": prompt.alias})
        prepared.outcome.prompt = {"name": prompt.name, "version": prompt.version, "alias": prompt.alias}
        return prompt

    async def routing_policy(self) -> tuple[RoutingPolicy, str]:
        """The configured policy, built once (threshold and learned load their predictor from
        MLflow); while it cannot be built, `strongest` stands in and the reason says why."""
        if self.policy is None and time.monotonic() - self.policy_failed_at > 30:
            try:
                self.policy = await anyio.to_thread.run_sync(build_policy, self.config.routing_policy, self.settings)
            except Exception as exc:  # noqa: BLE001 - an unavailable predictor must not fail requests
                self.policy_failed_at = time.monotonic()
                self.policy_error = f"{type(exc).__name__}: {exc}"[:300]
                logger.warning("routing policy %r unavailable: %s", self.config.routing_policy, self.policy_error)
        if self.policy is None:
            return Strongest(), f"policy {self.config.routing_policy!r} unavailable ({self.policy_error}); "
        return self.policy, ""

    async def route(self, prepared: Prepared, catalog: dict[str, CatalogEntry], pinned: str | None,
                    hits: list[dict]) -> RouteDecision:
        request = prepared.request
        with self.step(prepared, "route") as span:
            if pinned:
                decision = RouteDecision(pinned, "pinned", f"the request names {request.model}")
            else:
                route_request = RouteRequest(question=request.question, messages=tuple(request.messages),
                                             context=tuple(hits), max_tokens=request.max_tokens, user_id=request.user)
                policy, note = await self.routing_policy()
                cards = [e.card for e in catalog.values()]
                try:
                    decision = policy.choose(route_request, cards)
                except Exception as exc:  # noqa: BLE001 - e.g. a predictor that knows none of the models
                    note = f"policy {policy.name!r} failed ({type(exc).__name__}: {exc}); "
                    decision = Strongest().choose(route_request, cards)
                if note:
                    decision = RouteDecision(decision.model, decision.policy, note + decision.reason,
                                             decision.predicted_quality)
                # The learned router trains on these features with the outcome's scores.
                prepared.trace.attributes["routing_features"] = routing_features(route_request)
            span.attributes.update({"model": decision.model, "policy": decision.policy, "reason": decision.reason})
        prepared.outcome.route = {"policy": decision.policy, "model": decision.model, "reason": decision.reason,
                                  "predicted_quality": decision.predicted_quality}
        self.metrics.routes.labels(policy=decision.policy, model=decision.model).inc()
        return decision

    def fallback_chain(self, catalog: dict[str, CatalogEntry], model: str) -> list[CatalogEntry]:
        """The chosen model, then up to max_fallbacks others: other upstreams first (a different
        backend is likelier up), then by quality, then by price."""
        first = catalog[model]
        others = sorted((e for n, e in catalog.items() if n != model),
                        key=lambda e: (e.upstream == first.upstream, -(e.card.quality or 0.0), e.card.output_per_1k))
        return [first, *others[: self.config.max_fallbacks]]

    def upstream_params(self, request: ChatRequest) -> dict:
        return {"max_tokens": request.max_tokens, **request.params}

    def references(self, prepared: Prepared, answer: str) -> str:
        return references_block(answer, prepared.outcome.citations) if prepared.request.rag else ""

    def account(self, prepared: Prepared, generated: Generated) -> None:
        outcome = prepared.outcome
        outcome.model = generated.model
        outcome.finish_reason = generated.finish_reason or "stop"
        outcome.prompt_tokens, outcome.completion_tokens = generated.prompt_tokens, generated.completion_tokens
        outcome.cost = generated.cost
        outcome.fallbacks = generated.fallbacks
        outcome.usage_estimated = generated.usage_estimated
        for failed in generated.fallbacks:
            self.metrics.fallbacks.labels(from_model=failed["model"]).inc()
        trace = prepared.trace
        trace.generation = Generation(
            model=generated.model, prompt_tokens=generated.prompt_tokens, completion_tokens=generated.completion_tokens,
            cost=generated.cost, currency=outcome.currency,
            prompt_name=(outcome.prompt or {}).get("name", ""), prompt_version=(outcome.prompt or {}).get("version"),
            route=outcome.route or {}, usage_estimated=generated.usage_estimated,
            start_ns=next((s.start_ns for s in trace.spans if s.name == "generate"), trace.start_ns),
            end_ns=time.time_ns(), fallbacks=generated.fallbacks)

    async def finish(self, prepared: Prepared) -> None:
        """Settle the cost, store cache and memory, send the trace, count the metrics."""
        request, outcome = prepared.request, prepared.outcome
        await self.settle(prepared)
        kept_text = prepared.kept_text()
        if prepared.hit is None and prepared.exact_key and outcome.finish_reason in ("stop", "length"):
            payload = {"text": kept_text, "citations": outcome.citations, "model": outcome.model,
                       "prompt": outcome.prompt, "finish_reason": outcome.finish_reason}
            with self.step(prepared, "cache_store"):
                await anyio.to_thread.run_sync(self.cache.put, prepared.exact_key, prepared.scope, request.question,
                                               prepared.question_vector, payload)
        if request.session_id:
            with self.step(prepared, "memory"):
                await anyio.to_thread.run_sync(self.memory.append, request.session_id, request.key_id,
                                               request.question, kept_text)
        prepared.trace.attributes.update({"cache": outcome.cache, "cost": outcome.cost, "model": outcome.model,
                                          "route": outcome.route, "prompt": outcome.prompt})
        prepared.trace.finish(output=kept_text)
        self.tracer.submit(prepared.trace)
        if self.events is not None:
            await self.events.output_checked(request.trace_id, prepared.output_verdict, prepared.trace.input, kept_text,
                                             outcome.citations, outcome.model, outcome.route, request.key_id)
        kind = "rag" if request.rag else "proxy"
        self.metrics.requests.labels(kind=kind, status="ok").inc()
        self.metrics.latency.labels(kind=kind, cache=outcome.cache).observe(time.perf_counter() - prepared.started)
        if outcome.prompt_tokens or outcome.completion_tokens:
            self.metrics.tokens.labels(model=outcome.model, direction="input").inc(outcome.prompt_tokens)
            self.metrics.tokens.labels(model=outcome.model, direction="output").inc(outcome.completion_tokens)
            self.metrics.cost.labels(model=outcome.model, currency=outcome.currency).inc(outcome.cost)

    async def settle(self, prepared: Prepared) -> None:
        """Replace the request's budget reservation by its cost, once."""
        if prepared.reservation is not None:
            outcome = prepared.outcome
            await anyio.to_thread.run_sync(self.limits.settle, prepared.reservation, outcome.cost,
                                           outcome.prompt_tokens + outcome.completion_tokens)
            prepared.reservation = None

    async def failed(self, prepared: Prepared, exc: BaseException) -> BaseException:
        """Abandon the request; the exception to raise for it (a FlowError where one fits)."""
        # Shielded: when the client leaves, the server cancels this task, and every await in an
        # unshielded cleanup would be cancelled too, leaving the budget reserved and the cost unpaid.
        with anyio.CancelScope(shield=True):
            await self.abandon(prepared, exc)
        mapped = self.as_flow_error(exc)
        if mapped is not exc:
            mapped.__cause__ = exc
        return mapped

    async def abandon(self, prepared: Prepared, exc: BaseException) -> None:
        """A request that failed or whose client left: charge what was generated, trace the error."""
        generated = prepared.generated
        if generated is not None and not prepared.outcome.cost:
            # A stream cut off mid-way has its partial attempt priced by the generator (estimated usage).
            outcome = prepared.outcome
            outcome.cost = generated.cost
            outcome.prompt_tokens, outcome.completion_tokens = generated.prompt_tokens, generated.completion_tokens
        await self.settle(prepared)
        error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        prepared.trace.finish(output=prepared.kept_text(), error=str(error)[:500])
        self.tracer.submit(prepared.trace)
        status = exc.status if isinstance(exc, FlowError) else type(exc).__name__
        self.metrics.requests.labels(kind="rag" if prepared.request.rag else "proxy", status=str(status)).inc()

    @staticmethod
    def as_flow_error(exc: BaseException) -> BaseException:
        if isinstance(exc, FlowError):
            return exc
        if isinstance(exc, DeadlineExceeded):
            return FlowError(504, str(exc), "server_error", code="deadline_exceeded")
        if isinstance(exc, (ServiceUnavailable, CatalogUnavailable)):
            return FlowError(503, str(exc), "server_error", code="backend_unavailable")
        if isinstance(exc, UpstreamRejected):
            return FlowError(400, f"messages: the model refused the request: {exc}", param="messages",
                             code="upstream_rejected")
        if isinstance(exc, asyncio.TimeoutError):
            return FlowError(504, "a step of the flow timed out", "server_error", code="timeout")
        return exc

    async def close(self) -> None:
        await self.http.aclose()
        self.tracer.close()

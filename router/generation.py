"""Generation through OpenAI-compatible upstreams (the official `openai` async client), with
retries, a circuit breaker per upstream and fallback along a chain of models.

Streaming: a failure before the first token moves on to the next model transparently. A failure
mid-stream (the upstream died) asks the next model to continue the partial answer, so the client's
stream goes on; usage and cost then add up over both models, and the result lists the fallback.
Except in a tool call: once one has begun, a failure ends the generation (half a call cannot be
continued by another model). Tool-call deltas are collected in `Generated.tool_deltas`, not yielded:
the caller checks the whole calls before the client sees them.
Upstreams that send no usage in their stream (llama.cpp's server) get it estimated: one token per
content chunk, the prompt by `ragyard.tokens`; `usage_estimated` says so.

The `openai` client keeps its own transport; its errors map onto the kit's two (`upstream_error`):
`Unavailable` (retried with the clients' one policy, then the next model) and `Rejected` (a 4xx:
the request itself is refused, no other model is tried).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import httpx
import httpx2
import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from tenacity import AsyncRetrying

from ragyard.clients.base import retry_policy
from ragyard.kit.errors import Rejected, Unavailable, error_from_answer
from ragyard.tokens import estimate_prompt_tokens, estimate_tokens
from ragyard.tool_calls import call_deltas, merge_tool_deltas
from router.catalog import CatalogEntry, Upstream
from router.resilience import Breakers, Deadline

logger = logging.getLogger("ragyard.router.generation")
T = TypeVar("T")

CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without repeating anything."
)


@dataclass
class Attempt:
    """One model's share of a generation: usage and cost, or the error that ended it."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    usage_estimated: bool = False
    error: str | None = None


@dataclass
class Generated:
    text: str = ""
    finish_reason: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    tool_deltas: list[dict] = field(default_factory=list)  # the calls of the answer, as streamed

    @property
    def tool_calls(self) -> list[dict]:
        return merge_tool_deltas(self.tool_deltas)

    @property
    def model(self) -> str:
        """The model that finished the answer."""
        return self.attempts[-1].model if self.attempts else ""

    @property
    def prompt_tokens(self) -> int:
        return sum(a.prompt_tokens for a in self.attempts)

    @property
    def completion_tokens(self) -> int:
        return sum(a.completion_tokens for a in self.attempts)

    @property
    def cost(self) -> float:
        return sum(a.cost for a in self.attempts)

    @property
    def usage_estimated(self) -> bool:
        return any(a.usage_estimated for a in self.attempts)

    @property
    def fallbacks(self) -> list[dict]:
        return [{"model": a.model, "error": a.error} for a in self.attempts if a.error]


def continuation(messages: list[dict], partial: str) -> list[dict]:
    return [*messages, {"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_INSTRUCTION}]


# The `openai` client runs on httpx2 (its own fork of httpx), our other clients on httpx; an error
# raised while a stream is read comes unwrapped from either.
TIMEOUTS = (openai.APITimeoutError, httpx.TimeoutException, httpx2.TimeoutException, asyncio.TimeoutError)
UPSTREAM_ERRORS = (openai.APIError, httpx.HTTPError, httpx2.HTTPError)


def upstream_error(exc: BaseException, model: str) -> Unavailable | Rejected | None:
    """An upstream's failure as the kit's errors: Unavailable (connection trouble, a timeout, a 5xx
    or 429), Rejected (any other 4xx: the request itself is refused); None for what is no failure of
    the upstream (the request's deadline, a bug)."""
    if isinstance(exc, (Unavailable, Rejected)):
        return exc
    if isinstance(exc, TIMEOUTS):
        return Unavailable(describe(exc), retryable=False)
    if isinstance(exc, openai.APIStatusError) and 400 <= exc.status_code < 500 and exc.status_code != 429:
        return Rejected(model, error_from_answer(exc.status_code, exc.response.content))
    if isinstance(exc, UPSTREAM_ERRORS):
        return Unavailable(describe(exc))
    return None


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int, model: str) -> T:
    """`call()` on the upstream serving `model`, retried by the clients' one policy."""
    async for attempt in AsyncRetrying(**retry_policy(attempts)):
        with attempt:
            try:
                return await call()
            except Exception as exc:  # noqa: BLE001 - what is no upstream failure is raised as it is
                failure = upstream_error(exc, model)
                if failure is None or failure is exc:
                    raise
                raise failure from exc
    raise AssertionError("tenacity returns or raises")


class Generator:
    def __init__(self, breakers: Breakers, attempts: int, first_token_timeout_s: float):
        self.breakers = breakers
        self.attempts = attempts
        self.first_token_timeout_s = first_token_timeout_s
        self.clients: dict[Upstream, openai.AsyncOpenAI] = {}

    async def _open_stream(
        self, entry: CatalogEntry, messages: list[dict], params: dict
    ) -> openai.AsyncStream[ChatCompletionChunk]:
        # The messages are the request's, validated as OpenAI's chat messages on the way in.
        return await self.client(entry.upstream).chat.completions.create(
            model=entry.card.name,
            messages=cast(list[ChatCompletionMessageParam], messages),
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )

    def client(self, upstream: Upstream) -> openai.AsyncOpenAI:
        if upstream not in self.clients:
            self.clients[upstream] = openai.AsyncOpenAI(
                base_url=f"{upstream.url}/v1",
                api_key=upstream.api_key,
                max_retries=0,
                # openai's own Timeout type: the client checks it against the HTTP library it runs on
                # (httpx2 since openai 3.57), which rejects another library's Timeout.
                timeout=openai.Timeout(self.first_token_timeout_s, connect=3.0),
            )
        return self.clients[upstream]

    def _callable(self, entry: CatalogEntry) -> bool:
        return self.breakers[entry.upstream.url].allow()

    async def complete(
        self, chain: list[CatalogEntry], messages: list[dict], params: dict, deadline: Deadline
    ) -> Generated:
        """A whole answer from the first model of `chain` that gives one."""
        result = Generated()
        for entry in chain:
            if not self._callable(entry):
                result.attempts.append(Attempt(entry.card.name, error=f"circuit open for {entry.upstream.url}"))
                continue
            breaker = self.breakers[entry.upstream.url]
            try:
                response = await deadline.run(
                    with_retries(
                        functools.partial(
                            self.client(entry.upstream).chat.completions.create,
                            model=entry.card.name,
                            messages=messages,
                            stream=False,
                            **params,
                        ),
                        self.attempts,
                        entry.card.name,
                    ),
                    deadline.left(),
                    f"generation on {entry.card.name}",
                )
            except Exception as exc:  # noqa: BLE001 - what is no upstream failure is raised as it is
                failure = upstream_error(exc, entry.card.name)
                if not isinstance(failure, Unavailable):
                    if failure is None or failure is exc:
                        raise  # no upstream failure (the deadline, a bug), or already the kit's Rejected
                    raise failure from exc
                breaker.failure()
                result.attempts.append(Attempt(entry.card.name, error=failure.message))
                continue
            breaker.success()
            usage = response.usage
            message = response.choices[0].message
            result.text = message.content or ""
            result.tool_deltas = call_deltas(
                [call.model_dump(include={"id", "type", "function"}) for call in message.tool_calls or []]
            )
            attempt = Attempt(entry.card.name)
            if usage is not None:
                attempt.prompt_tokens, attempt.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            result.attempts.append(priced(entry, attempt, messages, estimate_tokens(result.text)))
            result.finish_reason = response.choices[0].finish_reason
            return result
        raise Unavailable(unavailable_message(result))

    async def stream(
        self, chain: list[CatalogEntry], messages: list[dict], params: dict, deadline: Deadline, result: Generated
    ) -> AsyncGenerator[str, None]:
        """Yield content deltas; `result` collects text, usage, cost and fallbacks as it goes."""
        max_tokens = params.get("max_tokens")
        for entry in chain:
            if not self._callable(entry):
                result.attempts.append(Attempt(entry.card.name, error=f"circuit open for {entry.upstream.url}"))
                continue
            breaker = self.breakers[entry.upstream.url]
            attempt = Attempt(entry.card.name)
            prompt = continuation(messages, result.text) if result.text else messages
            call_params = dict(params)
            if max_tokens is not None and result.completion_tokens:
                call_params["max_tokens"] = max(1, max_tokens - result.completion_tokens)
            chunks = 0
            stream = None
            try:
                stream = await deadline.run(
                    with_retries(
                        functools.partial(self._open_stream, entry, prompt, call_params),
                        self.attempts,
                        entry.card.name,
                    ),
                    self.first_token_timeout_s,
                    f"opening a stream on {entry.card.name}",
                )
                iterator = stream.__aiter__()
                while True:
                    try:
                        chunk = await deadline.run(
                            iterator.__anext__(), self.first_token_timeout_s, f"streaming from {entry.card.name}"
                        )
                    except StopAsyncIteration:
                        break
                    if chunk.usage is not None:
                        attempt.prompt_tokens = chunk.usage.prompt_tokens
                        attempt.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            chunks += 1
                            result.text += choice.delta.content
                            yield choice.delta.content
                        if choice.delta and choice.delta.tool_calls:
                            chunks += 1
                            result.tool_deltas += [d.model_dump(exclude_none=True) for d in choice.delta.tool_calls]
                        if choice.finish_reason:
                            result.finish_reason = choice.finish_reason
            except Exception as exc:  # noqa: BLE001 - what is no upstream failure is raised as it is
                failure = upstream_error(exc, entry.card.name)
                attempt.error = failure.message if isinstance(failure, Unavailable) else describe(exc)
                if not isinstance(failure, Unavailable):
                    if failure is None or failure is exc:
                        raise  # no upstream failure (the deadline, a bug), or already the kit's Rejected
                    raise failure from exc
                breaker.failure()
                if result.tool_deltas:  # half a call cannot be continued by another model
                    raise Unavailable(
                        f"{entry.card.name} failed in the middle of a tool call ({attempt.error}); "
                        "not continued on another model",
                        retryable=False,
                    ) from exc
                logger.warning("stream from %s failed after %d chunks: %s", entry.card.name, chunks, attempt.error)
                continue
            finally:
                # However the attempt ended (done, failed, deadline, client gone, safety block), what the
                # upstream generated costs; priced before closing the stream, an await that may be cancelled.
                result.attempts.append(priced(entry, attempt, prompt, chunks))
                if stream is not None:  # the upstream stops generating
                    with contextlib.suppress(Exception):
                        await stream.close()
            breaker.success()
            return
        raise Unavailable(unavailable_message(result))


def priced(entry: CatalogEntry, attempt: Attempt, prompt: list[dict], completion_estimate: int) -> Attempt:
    """The attempt with its cost. One that ended without usage (the upstream sends none, or a stream
    was cut off before its last chunk) is estimated: the prompt by `ragyard.tokens` and
    `completion_estimate` (a stream's chunks, an answer's estimated tokens); except an upstream that
    failed before its first chunk, which is charged nothing."""
    if not attempt.prompt_tokens and not attempt.completion_tokens and (completion_estimate or attempt.error is None):
        attempt.prompt_tokens = estimate_prompt_tokens([str(m.get("content") or "") for m in prompt])
        attempt.completion_tokens = completion_estimate
        attempt.usage_estimated = True
    attempt.cost = entry.card.cost(attempt.prompt_tokens, attempt.completion_tokens)
    return attempt


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]


def unavailable_message(result: Generated) -> str:
    tried = "; ".join(f"{a.model}: {a.error}" for a in result.attempts) or "no model to try"
    return f"no LLM backend could answer ({tried})"

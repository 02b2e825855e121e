"""Generation through OpenAI-compatible upstreams (the official `openai` async client), with
retries, a circuit breaker per upstream and fallback along a chain of models.

Streaming: a failure before the first token moves on to the next model transparently. A failure
mid-stream (the upstream died) asks the next model to continue the partial answer, so the client's
stream goes on; usage and cost then add up over both models, and the result lists the fallback.
Upstreams that send no usage in their stream (llama.cpp's server) get it estimated: one token per
content chunk, a quarter of the prompt's characters; `usage_estimated` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import openai

from router.catalog import CatalogEntry, Upstream
from router.resilience import HTTP_ERRORS, BackendUnavailable, Breakers, Deadline, is_transient, with_retries

logger = logging.getLogger("ragyard.router.generation")

CONTINUE_INSTRUCTION = ("Your previous answer was cut off. Continue it exactly where it stopped, "
                        "without repeating anything.")


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


def estimate_prompt_tokens(messages: list[dict]) -> int:
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages)


def continuation(messages: list[dict], partial: str) -> list[dict]:
    return [*messages, {"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_INSTRUCTION}]


class UpstreamRejected(RuntimeError):
    """The upstream refused the request itself (a 4xx such as a prompt over the context length)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def classify(exc: BaseException) -> None:
    """Re-raise what is not a backend failure; return for failures that move on to the next model."""
    if isinstance(exc, openai.APIStatusError) and 400 <= exc.status_code < 500 and exc.status_code != 429:
        raise UpstreamRejected(exc.status_code, str(exc.message)[:500]) from exc
    if not (is_transient(exc) or isinstance(exc, (openai.APIError, *HTTP_ERRORS))):
        raise exc


class Generator:
    def __init__(self, breakers: Breakers, attempts: int, first_token_timeout_s: float):
        self.breakers = breakers
        self.attempts = attempts
        self.first_token_timeout_s = first_token_timeout_s
        self.clients: dict[Upstream, openai.AsyncOpenAI] = {}

    def client(self, upstream: Upstream) -> openai.AsyncOpenAI:
        if upstream not in self.clients:
            self.clients[upstream] = openai.AsyncOpenAI(
                base_url=f"{upstream.url}/v1", api_key=upstream.api_key, max_retries=0,
                # openai's own Timeout type: the client checks it against the HTTP library it runs on
                # (httpx2 since openai 3.57), which rejects another library's Timeout.
                timeout=openai.Timeout(self.first_token_timeout_s, connect=3.0))
        return self.clients[upstream]

    def _callable(self, entry: CatalogEntry) -> bool:
        return self.breakers[entry.upstream.url].allow()

    async def complete(self, chain: list[CatalogEntry], messages: list[dict], params: dict,
                       deadline: Deadline) -> Generated:
        """A whole answer from the first model of `chain` that gives one."""
        result = Generated()
        for entry in chain:
            if not self._callable(entry):
                result.attempts.append(Attempt(entry.card.name, error=f"circuit open for {entry.upstream.url}"))
                continue
            breaker = self.breakers[entry.upstream.url]
            try:
                response = await deadline.run(with_retries(
                    lambda: self.client(entry.upstream).chat.completions.create(
                        model=entry.card.name, messages=messages, stream=False, **params),
                    self.attempts), deadline.left(), f"generation on {entry.card.name}")
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not a backend failure
                classify(exc)
                breaker.failure()
                result.attempts.append(Attempt(entry.card.name, error=describe(exc)))
                continue
            breaker.success()
            usage = response.usage
            result.text = response.choices[0].message.content or ""
            attempt = Attempt(entry.card.name)
            if usage is not None:
                attempt.prompt_tokens, attempt.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            result.attempts.append(priced(entry, attempt, messages, len(result.text) // 4))
            result.finish_reason = response.choices[0].finish_reason
            return result
        raise BackendUnavailable(unavailable_message(result))

    async def stream(self, chain: list[CatalogEntry], messages: list[dict], params: dict, deadline: Deadline,
                     result: Generated) -> AsyncIterator[str]:
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
                stream = await deadline.run(with_retries(
                    lambda: self.client(entry.upstream).chat.completions.create(
                        model=entry.card.name, messages=prompt, stream=True,
                        stream_options={"include_usage": True}, **call_params),
                    self.attempts), self.first_token_timeout_s, f"opening a stream on {entry.card.name}")
                iterator = stream.__aiter__()
                while True:
                    try:
                        chunk = await deadline.run(iterator.__anext__(), self.first_token_timeout_s,
                                                   f"streaming from {entry.card.name}")
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
                        if choice.finish_reason:
                            result.finish_reason = choice.finish_reason
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what is not a backend failure
                attempt.error = describe(exc)
                classify(exc)
                breaker.failure()
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
        raise BackendUnavailable(unavailable_message(result))


def priced(entry: CatalogEntry, attempt: Attempt, prompt: list[dict], completion_estimate: int) -> Attempt:
    """The attempt with its cost. One that ended without usage (the upstream sends none, or a stream
    was cut off before its last chunk) is estimated: the prompt's characters / 4 and
    `completion_estimate` (a stream's chunks, an answer's characters / 4); except an upstream that
    failed before its first chunk, which is charged nothing."""
    if not attempt.prompt_tokens and not attempt.completion_tokens and (completion_estimate or attempt.error is None):
        attempt.prompt_tokens = estimate_prompt_tokens(prompt)
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

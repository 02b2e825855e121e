"""The served catalog: loads each model's backend, checks a chat request against it, runs it in its queue.

The service layer turns what this yields into OpenAI's JSON and SSE; everything a request can get
wrong is raised here as an `APIError` naming the field, before any token is generated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from bentos.llm.admission import Admission
from bentos.llm.backends import ChatBackend, Generation, Piece, TokenUsage, make_backend
from bentos.llm.errors import APIError, QueueFull
from bentos.llm.pricing import ThroughputMeter, price_per_1k
from bentos.llm.schemas import ChatCompletionRequest, ModelCard, Pricing
from ragyard.settings import CatalogModel, Settings

# (model, outcome, usage or None) after every generation: outcome is stop, length, tool_calls,
# cancelled or error.
FinishHook = Callable[[str, str, TokenUsage | None], None]


@dataclass(frozen=True)
class Prepared:
    """A request checked against its model: what to generate, and the prompt's size."""

    entry: CatalogModel
    generation: Generation
    prompt_tokens: int | None


def message_text(content: Any) -> str | None:
    """OpenAI content (a string or text parts) as the plain string chat templates expect."""
    if content is None or isinstance(content, str):
        return content
    return "".join(part.text for part in content)


def plain_messages(request: ChatCompletionRequest) -> list[dict[str, Any]]:
    messages = []
    for message in request.messages:
        plain = message.model_dump(exclude_none=True)
        plain["content"] = message_text(message.content) or ""
        messages.append(plain)
    return messages


def response_format(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """OpenAI's json_object / json_schema as the backends take it: json_object with an optional schema."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise APIError(400, "response_format.json_schema.schema: required for type json_schema",
                           "response_format")
        return {"type": "json_object", "schema": fmt.json_schema.schema_}
    return {"type": "json_object"}


def logit_bias(request: ChatCompletionRequest) -> dict[int, float] | None:
    if not request.logit_bias:
        return None
    try:
        return {int(token): bias for token, bias in request.logit_bias.items()}
    except ValueError:
        raise APIError(400, "logit_bias: keys must be token ids (integers as strings)", "logit_bias") from None


class ModelHub:
    def __init__(self, settings: Settings, on_finish: FinishHook = lambda *_: None):
        self.limits = settings.llm
        self.on_finish = on_finish
        self.entries = {entry.name: entry for entry in self.limits.models}
        self.default_model = self.limits.default_model or self.limits.models[0].name
        self.backends: dict[str, ChatBackend] = {}
        for entry in self.limits.models:
            self.backends[entry.name] = make_backend(entry, settings)
        self.admission = {
            name: Admission(name, entry.max_concurrency, self.limits.queue_size, self.limits.retry_after_s)
            for name, entry in self.entries.items()
        }
        self.meters = {name: ThroughputMeter() for name in self.entries}
        self.created = int(time.time())

    # --- the catalog -------------------------------------------------------------------------

    def priced(self, entry: CatalogModel) -> bool:
        return entry.input_per_1k is not None and entry.output_per_1k is not None

    def pricing(self, entry: CatalogModel) -> Pricing:
        meter = self.meters[entry.name]
        cost = self.limits.machine_cost_per_hour
        derived = self.backends[entry.name].self_hosted
        return Pricing(
            input_per_1k=entry.input_per_1k if entry.input_per_1k is not None
            else price_per_1k(cost, meter.prompt_tok_s) if derived else 0.0,
            output_per_1k=entry.output_per_1k if entry.output_per_1k is not None
            else price_per_1k(cost, meter.decode_tok_s) if derived else 0.0,
        )

    def cards(self) -> list[ModelCard]:
        return [
            ModelCard(id=name, created=self.created, context_length=self.backends[name].context_length,
                      pricing=self.pricing(entry), quality=entry.quality, backend=entry.backend)
            for name, entry in self.entries.items()
        ]

    def entry(self, name: str) -> CatalogModel:
        entry = self.entries.get(name or self.default_model)
        if entry is None:
            raise APIError(404, f"model: {name!r} is not served here; choose one of {sorted(self.entries)}",
                           "model", "model_not_found")
        return entry

    async def probe(self, max_tokens: int) -> None:
        """Measure each self-hosted model's throughput once (and warm it up) for the derived prices."""
        for name, entry in self.entries.items():
            if self.backends[name].self_hosted and not self.priced(entry):
                request = ChatCompletionRequest(
                    model=name, max_tokens=max_tokens, temperature=0.0, seed=0,
                    messages=[{"role": "user", "content": "Explain what a Python list comprehension is."}])
                async for _ in self.run(await self.prepare(request)):
                    pass

    # --- one request -------------------------------------------------------------------------

    async def prepare(self, request: ChatCompletionRequest) -> Prepared:
        entry = self.entry(request.model)
        backend = self.backends[entry.name]
        cap = self.limits.max_tokens
        wanted = request.requested_max_tokens
        field = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        if wanted is not None and wanted > cap:
            raise APIError(400, f"{field}: {wanted} exceeds this server's cap of {cap} tokens (llm.max_tokens)",
                           field)
        messages = plain_messages(request)
        tools = [tool.model_dump(exclude_none=True) for tool in request.tools] if request.tools else None
        try:
            prompt_tokens = await backend.count_prompt_tokens(messages, tools)
        except ValueError as exc:  # the chat template refused the conversation (raise_exception)
            raise APIError(400, f"messages: the model's chat template rejects them: {exc}", "messages") from exc
        context = backend.context_length
        if prompt_tokens is not None:
            room = context - prompt_tokens
            if room < 1 or (wanted is not None and wanted > room):
                asked = wanted if wanted is not None else 1
                raise APIError(
                    400, f"This model's maximum context length is {context} tokens. However, you requested "
                         f"{prompt_tokens + asked} tokens ({prompt_tokens} in the messages, {asked} in the "
                         f"completion). Please reduce the length of the messages or the completion.",
                    "messages", "context_length_exceeded")
            max_tokens = wanted if wanted is not None else min(cap, room)
        else:
            max_tokens = wanted if wanted is not None else cap
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        generation = Generation(
            messages=messages, max_tokens=max_tokens, temperature=request.temperature, top_p=request.top_p,
            stop=stop, seed=request.seed, response_format=response_format(request), tools=tools,
            tool_choice=request.tool_choice if tools else None, logit_bias=logit_bias(request),
            presence_penalty=request.presence_penalty, frequency_penalty=request.frequency_penalty,
        )
        return Prepared(entry, generation, prompt_tokens)

    def check_capacity(self, prepared: Prepared) -> None:
        """Refuse now (a 429 before any response starts) when the model's queue is full."""
        admission = self.admission[prepared.entry.name]
        if admission.admitted >= admission.running + admission.waiting:
            raise QueueFull(admission.model, admission.waiting, admission.retry_after_s)

    async def run(self, prepared: Prepared) -> AsyncIterator[Piece | TokenUsage]:
        """Wait for a slot, generate, measure. Closing this iterator stops the generation."""
        name = prepared.entry.name
        outcome, usage, pieces = "cancelled", None, 0
        try:
            async with self.admission[name].slot():
                started = time.perf_counter()
                first = None
                async for item in self.backends[name].generate(prepared.generation, prepared.prompt_tokens):
                    if isinstance(item, TokenUsage):
                        usage = item
                    else:
                        first = first or time.perf_counter()
                        pieces += bool(item.content or item.tool_calls)
                        if item.finish_reason:
                            outcome = item.finish_reason
                    yield item
                if usage is not None and first is not None:
                    self.meters[name].record(usage.prompt_tokens, first - started, usage.completion_tokens,
                                             time.perf_counter() - first)
        except APIError:
            outcome = "error"
            raise
        finally:
            if usage is None and outcome == "cancelled":  # what was delivered before the client left
                usage = TokenUsage(prepared.prompt_tokens or 0, pieces)
            self.on_finish(name, outcome, usage)

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()

"""The served catalog: loads each model's backend, checks a chat request against it, runs it in its queue.

The service layer turns what this yields into OpenAI's JSON and SSE; everything a request can get
wrong is raised here as a `ServiceError` naming the field, before any token is generated.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from bentos.llm.admission import Admission
from bentos.llm.backends import ChatBackend, Generation, Piece, Stream, TokenUsage, make_backend
from bentos.llm.pricing import PROBE_MESSAGES, ThroughputMeter, price_per_1k
from bentos.llm.schemas import ChatCompletionRequest, ModelCard, Pricing
from bentos.llm.tool_calls import ToolCallFilter, plan_tools, template_messages
from ragyard.kit.errors import ServiceError
from ragyard.settings import CatalogModel, LLMBentoSettings

# (model, outcome, usage or None) after every generation: outcome is stop, length, tool_calls,
# cancelled or error.
FinishHook = Callable[[str, str, TokenUsage | None], None]


@dataclass(frozen=True)
class Prepared:
    """A request checked against its model: what to generate, and the prompt's size."""

    entry: CatalogModel
    generation: Generation
    prompt_tokens: int | None
    tool_calls: ToolCallFilter | None = None  # the model writes calls as text: parse them


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
            raise ServiceError(
                400, "response_format.json_schema.schema: required for type json_schema", param="response_format"
            )
        return {"type": "json_object", "schema": fmt.json_schema.schema_}
    return {"type": "json_object"}


def logit_bias(request: ChatCompletionRequest) -> dict[int, float] | None:
    if not request.logit_bias:
        return None
    try:
        return {int(token): bias for token, bias in request.logit_bias.items()}
    except ValueError:
        raise ServiceError(
            400, "logit_bias: keys must be token ids (integers as strings)", param="logit_bias"
        ) from None


def trim_tool_deltas(deltas: list[dict[str, Any]], seen: set[int]) -> list[dict[str, Any]]:
    """OpenAI's stream shape: a tool call's id, type and name only in its first delta, then arguments."""
    trimmed = []
    for delta in deltas:
        index = delta.get("index", 0)
        if index in seen:
            delta = {"index": index, "function": {"arguments": delta.get("function", {}).get("arguments", "")}}
        seen.add(index)
        trimmed.append(delta)
    return trimmed


class FirstPiece:
    """When a backend's first piece came (the throughput meter's split of prefill and decode),
    measured before any tool-call parsing holds pieces back."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.at: float | None = None

    async def tap(self, generation: Stream) -> Stream:
        async with contextlib.aclosing(generation):
            async for item in generation:
                if self.at is None and not isinstance(item, TokenUsage):
                    self.at = time.perf_counter()
                yield item


class ModelHub:
    def __init__(self, settings: LLMBentoSettings, on_finish: FinishHook = lambda *_: None):
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

    def pricing(self, entry: CatalogModel) -> Pricing:
        """Configured prices; else (self-hosted: providers must configure theirs) derived from throughput."""
        meter = self.meters[entry.name]

        def price(configured: float | None, tokens_per_s: float | None) -> float:
            return (
                configured if configured is not None else price_per_1k(self.limits.machine_cost_per_hour, tokens_per_s)
            )

        return Pricing(
            input_per_1k=price(entry.input_per_1k, meter.prompt_tok_s),
            output_per_1k=price(entry.output_per_1k, meter.decode_tok_s),
        )

    def cards(self) -> list[ModelCard]:
        return [
            ModelCard(
                id=name,
                created=self.created,
                context_length=self.backends[name].context_length,
                pricing=self.pricing(entry),
                quality=entry.quality,
                backend=entry.backend,
                supports_tools=self.supports_tools(name),
            )
            for name, entry in self.entries.items()
        ]

    def supports_tools(self, name: str) -> bool:
        configured = self.entries[name].supports_tools
        return configured if configured is not None else self.backends[name].supports_tools

    def entry(self, name: str) -> CatalogModel:
        entry = self.entries.get(name or self.default_model)
        if entry is None:
            raise ServiceError(
                404,
                f"model: {name!r} is not served here; choose one of {sorted(self.entries)}",
                param="model",
                code="model_not_found",
            )
        return entry

    async def probe(self, max_tokens: int) -> None:
        """Measure each self-hosted model's throughput once (and warm it up) for the derived prices."""
        if max_tokens < 1:
            return
        for name, entry in self.entries.items():
            if self.backends[name].self_hosted and not entry.priced:
                request = ChatCompletionRequest.model_validate(
                    {
                        "model": name,
                        "max_tokens": min(max_tokens, self.limits.max_tokens),
                        "temperature": 0.0,
                        "seed": 0,
                        "messages": PROBE_MESSAGES,
                    }
                )
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
            raise ServiceError(
                400, f"{field}: {wanted} exceeds this server's cap of {cap} tokens (llm.max_tokens)", param=field
            )
        messages = plain_messages(request)
        if backend.renders_chat:
            messages = template_messages(messages)
        requested_tools = [tool.model_dump(exclude_none=True) for tool in request.tools] if request.tools else None
        tools = plan_tools(
            entry.name,
            requested_tools,
            request.tool_choice,
            request.parallel_tool_calls,
            backend.renders_chat,
            self.supports_tools(entry.name),
        )
        try:
            prompt_tokens = await backend.count_prompt_tokens(messages, tools.tools)
        except ValueError as exc:  # the chat template refused the conversation (raise_exception)
            raise ServiceError(
                400, f"messages: the model's chat template rejects them: {exc}", param="messages"
            ) from exc
        context = backend.context_length
        if prompt_tokens is not None:
            room = context - prompt_tokens
            if room < 1 or (wanted is not None and wanted > room):
                asked = wanted if wanted is not None else 1
                raise ServiceError(
                    400,
                    f"This model's maximum context length is {context} tokens. However, you requested "
                    f"{prompt_tokens + asked} tokens ({prompt_tokens} in the messages, {asked} in the "
                    f"completion). Please reduce the length of the messages or the completion.",
                    param="messages",
                    code="context_length_exceeded",
                )
            max_tokens = wanted if wanted is not None else min(cap, room)
        else:
            max_tokens = wanted if wanted is not None else cap
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
        # A forced call constrains the answer to its schema, whatever response_format asked.
        fmt = (
            {"type": "json_object", "schema": tools.forced_schema} if tools.forced_schema else response_format(request)
        )
        generation = Generation(
            messages=messages,
            max_tokens=max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=stop,
            seed=request.seed,
            response_format=fmt,
            tools=tools.tools,
            tool_choice=tools.tool_choice,
            parallel_tool_calls=request.parallel_tool_calls if tools.tools else None,
            logit_bias=logit_bias(request),
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
        )
        return Prepared(entry, generation, prompt_tokens, tools.filter)

    async def run(self, prepared: Prepared) -> AsyncGenerator[Piece | TokenUsage, None]:
        """Wait for a slot, generate, measure. Closing this iterator stops the generation."""
        name = prepared.entry.name
        outcome, usage, pieces = "cancelled", None, 0
        try:
            async with self.admission[name].slot():
                timing = FirstPiece()
                generation = timing.tap(self.backends[name].generate(prepared.generation, prepared.prompt_tokens))
                if prepared.tool_calls is not None:
                    generation = prepared.tool_calls.pieces(generation)
                async with contextlib.aclosing(generation):
                    async for item in generation:
                        if isinstance(item, TokenUsage):
                            usage = item
                        else:
                            pieces += bool(item.content or item.tool_calls)
                            if item.finish_reason:
                                outcome = item.finish_reason
                        yield item
                if usage is not None and timing.at is not None:
                    self.meters[name].record(
                        usage.prompt_tokens,
                        timing.at - timing.started,
                        usage.completion_tokens,
                        time.perf_counter() - timing.at,
                    )
        except ServiceError:
            outcome = "error"
            raise
        finally:
            if usage is None and outcome == "cancelled":  # what was delivered before the client left
                usage = TokenUsage(prepared.prompt_tokens or 0, pieces)
            self.on_finish(name, outcome, usage)

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()

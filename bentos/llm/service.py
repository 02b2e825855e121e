"""The LLM bento: one OpenAI-compatible surface over llama.cpp (CPU), vLLM (GPU) and remote providers.

Start it with ``bentoml serve bentos.llm.service:LLM --host 127.0.0.1 --port 3003``. The catalog is
``RAGYARD_LLM__MODELS``; ``GET /v1/models`` lists it with context lengths, prices and quality priors,
``POST /v1/chat/completions`` answers whole or as server-sent events.

The API is a FastAPI app mounted with ``@bentoml.asgi_app`` rather than ``@bentoml.api`` routes:
OpenAI clients need its exact JSON shapes (errors included, with 400/404/429 statuses), SSE framing
(``data: {...}`` blocks, ``data: [DONE]``) and a stream that stops when the client leaves, which
sse-starlette's EventSourceResponse gives (it cancels the generator on disconnect).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

import bentoml
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse
from starlette.responses import JSONResponse

from bentos.llm.backends import Piece, TokenUsage
from bentos.llm.hub import ModelHub, Prepared, trim_tool_deltas
from bentos.llm.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelList,
    ResponseMessage,
    Usage,
)
from ragyard.kit.errors import ServiceError
from ragyard.kit.metrics import counter
from ragyard.kit.serving import error_response, serve_errors
from ragyard.settings import LLMBentoSettings
from ragyard.tool_calls import merge_tool_deltas

logger = logging.getLogger("ragyard.llm")

# The settings, parsed once per process, here: the service decorator needs the catalog at import.
SETTINGS = LLMBentoSettings()
RESOURCES = {"gpu": 1} if any(m.backend == "vllm" for m in SETTINGS.llm.models) else {"cpu": "2"}

openai_app = FastAPI(title="ragyard llm: OpenAI-compatible API", docs_url=None, redoc_url=None)
GENERATIONS = counter("ragyard_llm_generations", "Generations by how they ended", ["model", "outcome"])
PROMPT_TOKENS = counter("ragyard_llm_prompt_tokens", "Prompt tokens processed", ["model"])
COMPLETION_TOKENS = counter("ragyard_llm_completion_tokens", "Completion tokens generated", ["model"])


def count_generation(model: str, outcome: str, usage: TokenUsage | None) -> None:
    GENERATIONS.labels(model=model, outcome=outcome).inc()
    if usage is not None:
        PROMPT_TOKENS.labels(model=model).inc(usage.prompt_tokens)
        COMPLETION_TOKENS.labels(model=model).inc(usage.completion_tokens)


def usage_of(usage: TokenUsage) -> Usage:
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


async def client_gone(request: Request, every_s: float = 0.25) -> None:
    """Returns once the client of a non-streamed request has hung up."""
    while not await request.is_disconnected():
        await asyncio.sleep(every_s)


async def unless_client_leaves(request: Request, work: Coroutine[Any, Any, ChatCompletion]):
    """`work`'s answer, or, when the client hangs up first, `work` cancelled and a 499 nobody reads.

    The handler returns normally either way: a CancelledError escaping it would leave the request
    open inside the server, which then never finishes its graceful shutdown.
    """
    answer, gone = asyncio.create_task(work), asyncio.create_task(client_gone(request))
    try:
        done, _ = await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        if answer in done:
            return answer.result()
        answer.cancel()
        await asyncio.gather(answer, return_exceptions=True)
        return error_response(ServiceError(499, "the client closed the request", code="client_closed"))
    finally:
        for task in (answer, gone):
            task.cancel()


@bentoml.service(resources=RESOURCES, traffic={"timeout": 600, "max_concurrency": 1024})
@bentoml.asgi_app(openai_app, path="/v1")
class LLM:
    def __init__(self) -> None:
        self.limits = SETTINGS.llm
        self.hub = ModelHub(SETTINGS, on_finish=count_generation)
        self.probed = False

    @bentoml.on_startup
    async def measure_throughput(self) -> None:
        await self.hub.probe(self.limits.probe_tokens)
        self.probed = True

    @bentoml.on_shutdown
    async def release_models(self) -> None:
        await self.hub.aclose()

    def __is_ready__(self) -> bool:
        return self.probed

    @openai_app.get("/models", response_model=ModelList)
    async def list_models(self) -> ModelList:
        return ModelList(data=self.hub.cards())

    @openai_app.post("/chat/completions", response_model=ChatCompletion)
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        prepared = await self.hub.prepare(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            # Wait for the first piece before answering, so that a full queue (429) or a failing
            # provider (502) is the response's status rather than an error inside a 200 stream.
            generation = self.hub.run(prepared)
            try:
                first = await anext(generation)
            except BaseException:
                await generation.aclose()
                raise
            return EventSourceResponse(self.events(prepared, completion_id, first, generation), sep="\n", ping=15)
        return await unless_client_leaves(request, self.complete(prepared, completion_id))

    async def complete(self, prepared: Prepared, completion_id: str) -> ChatCompletion:
        content, tool_calls, finish_reason, usage = [], [], "stop", None
        async for item in self.hub.run(prepared):
            if isinstance(item, TokenUsage):
                usage = item
                continue
            content.append(item.content or "")
            tool_calls += item.tool_calls or []
            finish_reason = item.finish_reason or finish_reason
        message = ResponseMessage(
            content="".join(content) if not tool_calls else None, tool_calls=merge_tool_deltas(tool_calls) or None
        )
        assert usage is not None, "every backend ends a generation with its usage"
        return ChatCompletion(
            id=completion_id,
            created=int(time.time()),
            model=prepared.entry.name,
            choices=[Choice(message=message, finish_reason=finish_reason)],
            usage=usage_of(usage),
        )

    async def events(
        self,
        prepared: Prepared,
        completion_id: str,
        first: Piece | TokenUsage,
        generation: AsyncGenerator[Piece | TokenUsage, None],
    ) -> AsyncIterator[str]:
        """SSE data blocks: a role chunk, content chunks, the finish chunk, a usage chunk, [DONE]."""
        created = int(time.time())

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            return ChatCompletionChunk(
                id=completion_id, created=created, model=prepared.entry.name, choices=choices, usage=usage
            ).model_dump_json(exclude_none=False)

        async def items():
            yield first
            async for item in generation:
                yield item

        tool_calls_seen: set[int] = set()
        try:
            yield chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])
            async for item in items():
                if isinstance(item, Piece):
                    tool_calls = trim_tool_deltas(item.tool_calls, tool_calls_seen) if item.tool_calls else None
                    delta = Delta(content=item.content, tool_calls=tool_calls)
                    yield chunk([ChunkChoice(delta=delta, finish_reason=item.finish_reason)])
                else:
                    yield chunk([], usage_of(item))
        except ServiceError as exc:
            # The response has started: the error goes in the stream, where OpenAI clients raise it.
            logger.warning("stream %s failed: %s", completion_id, exc.message)
            yield json.dumps(exc.body())
        finally:
            await generation.aclose()  # a client that left stops its generation here
        yield "[DONE]"


@openai_app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def _unknown_route(path: str, request: Request) -> JSONResponse:
    # Registered after the service's routes: whatever they do not match, in OpenAI's error shape.
    raise ServiceError(
        404, f"{request.method} /v1/{path}: no such route; this server has /v1/models and /v1/chat/completions"
    )


serve_errors(LLM, openai_app)

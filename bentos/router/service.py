"""The router bento, the platform's front door: OpenAI-compatible chat completions over RAG.

Start it with ``bentoml serve bentos.router.service:Router --host 127.0.0.1 --port 3000``.
Routes: ``POST /v1/chat/completions`` (stream or not), ``GET /v1/models``, ``POST /v1/feedback``;
BentoML adds /healthz, /readyz, /metrics. Every /v1 route needs ``Authorization: Bearer <key>``
(keys from ``ragyard keys create``). The flow itself is `router.flow`; schemas and the
extra response fields are documented in `bentos/router/schemas.py`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import anyio
import bentoml
import sqlalchemy.exc
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, StreamingResponse

from bentos.router.schemas import ChatCompletionRequest, FeedbackRequest
from ragyard.events.publisher import EventNotStored
from ragyard.events.schema import DocumentChange, DocumentChanged
from ragyard.kit.errors import ServiceError, Unavailable
from ragyard.kit.serving import error_response, serve_errors
from ragyard.settings import RouterBentoSettings
from ragyard.tool_calls import call_deltas
from router.chat import AUTO, RAG_PREFIX, ChatRequest, Message, Outcome, ToolCalls
from router.events import PRODUCER
from router.keys import ApiKey
from router.wiring import build_flow

logger = logging.getLogger("ragyard.router")
openai_app = FastAPI(title="ragyard router: OpenAI-compatible API", docs_url=None, redoc_url=None)


@openai_app.exception_handler(sqlalchemy.exc.OperationalError)
@openai_app.exception_handler(sqlalchemy.exc.TimeoutError)
async def _state_unavailable(_: Request, exc: sqlalchemy.exc.SQLAlchemyError) -> JSONResponse:
    """The state database (keys, budgets, cache, memory) is down, locked, or out of pooled
    connections: a 503 to retry, not a 500."""
    logger.error("router state database unavailable: %s", exc)
    return error_response(
        ServiceError(
            503,
            "the router's state database (keys, budgets) is unavailable; retry shortly",
            code="state_unavailable",
            retry_after_s=5,
        )
    )


def usage(outcome: Outcome) -> dict:
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


def completion_body(outcome: Outcome) -> dict:
    message: dict[str, Any] = {"role": "assistant", "content": outcome.text}
    if outcome.tool_calls:
        message = {"role": "assistant", "content": outcome.text or None, "tool_calls": outcome.tool_calls}
    return {
        "id": outcome.id,
        "object": "chat.completion",
        "created": outcome.created,
        "model": outcome.model,
        "choices": [{"index": 0, "message": message, "finish_reason": outcome.finish_reason, "logprobs": None}],
        "usage": usage(outcome),
        "citations": [c.wire() for c in outcome.citations],
        "ragyard": outcome.extra(),
    }


def sse(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def chunk(
    request_id: str, created: int, model: str, delta: dict | None, finish_reason: str | None = None, **extra
) -> bytes:
    """A stream chunk; `delta` None: the usage chunk, with no choices (OpenAI's last chunk when the
    request asks for `stream_options.include_usage`)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
    return sse(
        {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }
    )


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 300, "max_concurrency": 256})
@bentoml.asgi_app(openai_app, path="/v1")
class Router:
    def __init__(self) -> None:
        self.settings = RouterBentoSettings()
        self.config = self.settings.router
        self.flow = build_flow(self.settings)

    @bentoml.on_startup
    async def start_events(self) -> None:
        """In the serving event loop; the broker is connected to in the background."""
        self.flow.events.start()

    @bentoml.on_shutdown
    async def close_flow(self) -> None:
        await self.flow.aclose()

    async def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key; None when keys are not required; a 401 when it is missing or wrong."""
        header = request.headers.get("authorization", "")
        if not self.config.require_api_key:
            return None
        match = re.fullmatch(r"Bearer\s+(\S+)", header.strip())
        if not match:
            raise ServiceError(401, "Authorization: missing; send 'Authorization: Bearer <ragyard API key>'")
        key = await anyio.to_thread.run_sync(self.flow.keys.authenticate, match.group(1))
        if key is None:
            raise ServiceError(401, "Authorization: unknown or revoked API key")
        return key

    @openai_app.get("/models")
    async def models(self, request: Request):
        await self.authenticate(request)
        catalog = await self.flow.routing.catalog.current()  # a 503 naming the upstreams when none answers
        data = [
            {
                "id": AUTO,
                "object": "model",
                "created": 0,
                "owned_by": "ragyard",
                "description": f"RAG, model chosen by the {self.config.routing_policy!r} routing policy",
            }
        ]
        for name, entry in catalog.items():
            card = entry.card
            info = {
                "object": "model",
                "created": 0,
                "owned_by": "ragyard",
                "context_length": card.context_length,
                "pricing": {
                    "input_per_1k": card.input_per_1k,
                    "output_per_1k": card.output_per_1k,
                    "currency": entry.currency,
                },
                "quality": card.quality,
                "backend": entry.backend,
                "supports_tools": entry.supports_tools,
            }
            data.append({"id": f"{RAG_PREFIX}{name}", **info, "description": f"RAG on {name}"})
            data.append({"id": name, **info, "description": f"{name} without retrieval"})
        return {"object": "list", "data": data}

    def chat_request(self, body: ChatCompletionRequest, key: ApiKey | None, request: Request) -> ChatRequest:
        max_tokens = body.max_completion_tokens or body.max_tokens or self.config.default_max_tokens
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        if max_tokens > self.config.max_tokens_limit:
            raise ServiceError(
                400, f"{field}: {max_tokens} exceeds this router's limit of {self.config.max_tokens_limit}", param=field
            )
        # "developer" is OpenAI's newer name for "system", which every upstream knows.
        messages = tuple(
            Message(
                "system" if m.role == "developer" else m.role,
                m.text(),
                tuple(c.model_dump() for c in m.tool_calls or ()),
                m.tool_call_id,
                m.name,
            )
            for m in body.messages
        )
        if body.model.startswith(RAG_PREFIX) and not any(m.role == "user" and m.content.strip() for m in messages):
            raise ServiceError(400, f"messages: {body.model} needs a user message with the question", param="messages")
        session = body.ragyard.session_id or request.headers.get("x-ragyard-session") or None
        cache_header = request.headers.get("x-ragyard-cache", "").strip().lower()
        return ChatRequest(
            model=body.model,
            messages=messages,
            max_tokens=max_tokens,
            params=body.upstream_params(),
            stream=bool(body.stream),
            key=key,
            user=body.user or body.safety_identifier,
            session_id=session,
            metadata=body.metadata or {},
            use_cache=body.ragyard.cache and cache_header not in ("off", "false", "0", "no"),
            memory=body.ragyard.memory,
        )

    @openai_app.post("/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        chat = self.chat_request(body, await self.authenticate(request), request)
        if not chat.stream:
            return completion_body(await self.flow.answer(chat))
        events = self.flow.stream(chat)
        first = await events.__anext__()  # every refusal (4xx, 429, 503) happens before the first delta
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            self.sse_body(chat, events, first, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def sse_body(self, chat: ChatRequest, events, first, include_usage: bool):
        """OpenAI's chunks: the role, content deltas, tool-call deltas, the finish (with ragyard's
        `citations` and `ragyard` extras), and with `include_usage` a last chunk with the usage and no
        choices (every other chunk's usage null)."""
        created = int(time.time())
        request_id = f"chatcmpl-{chat.trace_id}"
        started = False
        try:
            event = first
            while True:
                if isinstance(event, Outcome):
                    nulled = {"usage": None} if include_usage else {}
                    yield chunk(
                        event.id,
                        created,
                        event.model,
                        {},
                        event.finish_reason,
                        **nulled,
                        citations=[c.wire() for c in event.citations],
                        ragyard=event.extra(),
                    )
                    if include_usage:
                        yield chunk(event.id, created, event.model, None, usage=usage(event))
                    break
                if not started:
                    started = True
                    yield chunk(request_id, created, chat.model, {"role": "assistant", "content": ""})
                if isinstance(event, ToolCalls):
                    for delta in call_deltas(event.calls):
                        yield chunk(request_id, created, chat.model, {"tool_calls": [delta]})
                else:
                    yield chunk(request_id, created, chat.model, {"content": event})
                event = await events.__anext__()
        except StopAsyncIteration:
            pass
        except ServiceError as error:
            yield sse(error.body())
        finally:
            await events.aclose()
        yield sse("[DONE]")

    @openai_app.post("/feedback")
    async def feedback(self, body: FeedbackRequest, request: Request):
        """A score for an answer: 202 once stored as an event (broker or outbox), whose consumer exports it
        to Langfuse when configured, else as an MLflow assessment on its trace; a low score flags the answer."""
        key = await self.authenticate(request)
        trace_id = body.id.removeprefix("chatcmpl-")
        if not re.fullmatch(r"[0-9a-f]{32}", trace_id):
            raise ServiceError(400, "id: not a ragyard completion id (chatcmpl-<32 hex digits>)", param="id")
        if key is not None and key.id != await anyio.to_thread.run_sync(self.flow.keys.completion_owner, trace_id):
            # also unknown ids: whether another key's id exists is not told
            raise ServiceError(404, f"id: no completion {body.id} for this API key", param="id")
        try:
            await self.flow.events.feedback(trace_id, body.name, body.value, body.comment, key.id if key else None)
        except EventNotStored as error:
            raise events_unavailable(error) from error
        return JSONResponse({"accepted": True, "trace_id": trace_id}, status_code=202)

    @openai_app.post("/documents/changed")
    async def document_changed(self, body: DocumentChange, request: Request):
        """A webhook for sources: a file changed, so the ingestion indexes it now (a document.changed
        event) instead of at its next poll. Admin keys only (`ragyard keys create --admin`)."""
        key = await self.authenticate(request)
        if key is not None and not await anyio.to_thread.run_sync(self.flow.keys.is_admin, key.id):
            raise ServiceError(
                403, "this endpoint needs an admin key (ragyard keys create --admin)", code="admin_key_required"
            )
        event = DocumentChanged(producer=PRODUCER, **body.model_dump())
        try:
            await self.flow.events.publish(event)
        except EventNotStored as error:
            raise events_unavailable(error) from error
        return JSONResponse({"accepted": True, "event_id": event.id}, status_code=202)


def events_unavailable(error: EventNotStored) -> Unavailable:
    """Nothing was stored: the client must not take it as accepted, and may retry."""
    return Unavailable(f"not stored, retry shortly: {error}", code="events_unavailable", retry_after_s=5)


serve_errors(Router, openai_app)

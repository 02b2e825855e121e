"""The one handler set every bento installs: ``serve_errors(Service, *mounted_fastapi_apps)``.

Every error a bento answers has OpenAI's shape (`ragyard.kit.errors`), whoever produced it:

- its FastAPI apps (the OpenAI-compatible routes, the retriever's ``/index``): exception handlers
  for `ServiceError`, validation errors (400 naming the field), HTTP errors (an unknown route) and
  anything unexpected (500, logged);
- its ``@bentoml.api`` methods: `answers_errors` answers the ServiceErrors they raise (BentoML would
  answer any exception with a 500);
- BentoML itself (the validation of ``@bentoml.api`` input, its unknown routes, its 500s): the ASGI
  middleware `OpenAIErrors` reshapes every error answer not in OpenAI's shape yet, and refuses a
  body that is not JSON (415) before anything parses it: BentoML answered a multipart Content-Type
  without a boundary with a 500.

Why a middleware rather than serving every route through a mounted FastAPI app: the batching API
of the embedder, BentoML's own routes and its input validation stay BentoML's (typed ``@bentoml.api``
routes with adaptive batching, checked by pydantic's strict JSON parser), and one middleware covers
all of them, on every bento, whatever later code adds. BentoML's traffic control runs outside any
service middleware: its own 429 (``max_concurrency`` reached) and 504 (``traffic.timeout``) keep
BentoML's ``{"error": str}`` body.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragyard.kit.errors import ServiceError, error_from_answer, invalid_request, is_openai_error

if TYPE_CHECKING:
    import bentoml

logger = logging.getLogger("ragyard.kit")

# application/json and its structured-syntax relatives (application/merge-patch+json, ...).
JSON_MEDIA_TYPE = re.compile(r"^application/([a-z0-9.+-]*\+)?json$")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def serve_errors(service: bentoml.Service, *apps: FastAPI) -> None:
    """Install the handler set: the handlers on each FastAPI app the service mounts, the middleware
    on the service."""
    for app in apps:
        install_handlers(app)
    service.add_asgi_middleware(OpenAIErrors)


def error_response(error: ServiceError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


# ---- FastAPI apps -------------------------------------------------------------------------------


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


# Starlette types every handler's exception as Exception; each is registered for the one class it casts to.


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    return error_response(cast(ServiceError, exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    # FastAPI's locations start with where the value came from; the body is the request's fields.
    errors = [
        {**e, "loc": tuple(e["loc"])[1:]} if tuple(e.get("loc", ()))[:1] == ("body",) else e
        for e in cast(RequestValidationError, exc).errors()
    ]
    return error_response(invalid_request(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    http_error = cast(StarletteHTTPException, exc)
    message = f"{request.method} {request.url.path}: {http_error.detail}"
    response = error_response(ServiceError(http_error.status_code, message))
    response.headers.update(http_error.headers or {})
    return response


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ServiceError(500, f"internal error: {type(exc).__name__}"))


# ---- @bentoml.api methods -----------------------------------------------------------------------


def answers_errors(method: Callable) -> Callable:
    """Decorate an ``@bentoml.api`` method (under the ``@bentoml.api`` line) so that the ServiceErrors
    it raises are answered as such. The wrapper is a coroutine function exactly when the method is,
    as BentoML decides by it how to call the method."""
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def answering(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except ServiceError as error:
                return error_response(error)
    else:

        @functools.wraps(method)
        def answering(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except ServiceError as error:
                return error_response(error)

    return answering


# ---- everything else: the ASGI middleware -------------------------------------------------------


def unsupported_media_type(scope: Scope) -> ServiceError | None:
    """A 415 for a request body that is not JSON; no Content-Type is read as JSON, as BentoML and
    FastAPI do."""
    if scope["method"] not in BODY_METHODS:
        return None
    content_type = Headers(scope=scope).get("content-type")
    if content_type is None:
        return None
    media_type = content_type.split(";")[0].strip().lower()
    if JSON_MEDIA_TYPE.match(media_type):
        return None
    return ServiceError(
        415,
        f"Content-Type: {content_type!r} is not accepted; send the body as JSON with Content-Type: application/json",
    )


class OpenAIErrors:
    """Answers every error in OpenAI's shape: a 415 for a body that is not JSON; an error answer
    that is not in that shape reshaped (status and headers kept); an exception nobody answered, a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (refusal := unsupported_media_type(scope)) is not None:
            await send_error(send, refusal)
            return
        held: Message | None = None  # the start of an error answer, held until its body is complete
        body = bytearray()
        responded = False

        async def reshaping(message: Message) -> None:
            nonlocal held, responded
            if message["type"] == "http.response.start":
                responded = True
                if message["status"] >= 400:
                    held = message
                    return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await send_reshaped(send, scope, held, bytes(body))

        try:
            await self.app(scope, receive, reshaping)
        except Exception:
            if responded:
                raise
            logger.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            await send_error(send, ServiceError(500, "internal error: the server failed to answer"))


async def send_reshaped(send: Send, scope: Scope, start: Message, body: bytes) -> None:
    """Send an error answer, put into OpenAI's shape unless it already is."""
    try:
        in_shape = is_openai_error(json.loads(body))
    except ValueError:
        in_shape = False
    if in_shape:
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    headers = Headers(raw=start["headers"])
    error = error_from_answer(start["status"], body, headers.get("retry-after"))
    if error.status in (404, 405):  # a route-level error: say which request it was
        error.message = f"{scope['method']} {scope['path']}: {error.message}"
    await send_error(send, error, start["headers"])


async def send_error(send: Send, error: ServiceError, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error.body()).encode()
    replaced = {b"content-length", b"content-type", *(name.lower().encode() for name in error.headers())}
    raw = [(name, value) for name, value in headers if name.lower() not in replaced]
    raw += [(name.lower().encode(), value.encode()) for name, value in error.headers().items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

"""The service kit (ragyard/kit) and the base client, without bentos: the error type and its body,
the handler set on real ASGI apps, the base client against a real HTTP server on loopback, lazy
metrics, and the token estimates."""

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import prometheus_client
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ragyard.clients.base import ServiceClient
from ragyard.kit.errors import Rejected, ServiceError, Unavailable, error_from_answer, invalid_request
from ragyard.kit.metrics import counter, histogram
from ragyard.kit.serving import OpenAIErrors, answers_errors, install_handlers
from ragyard.tokens import estimate_prompt_tokens, estimate_tokens, max_prompt_tokens
from tests.support.network import free_port

# ---- the error type -----------------------------------------------------------------------------


def test_a_service_error_is_openai_s_body_with_defaults_by_status():
    assert ServiceError(400, "top_k: too big", param="top_k").body() == {
        "error": {
            "message": "top_k: too big",
            "type": "invalid_request_error",
            "param": "top_k",
            "code": "invalid_value",
        }
    }
    unauthorized = ServiceError(401, "Authorization: missing")
    assert (unauthorized.type, unauthorized.code) == ("authentication_error", "invalid_api_key")
    assert unauthorized.headers() == {"WWW-Authenticate": "Bearer"}
    limited = ServiceError(429, "slow down", retry_after_s=0.2)
    assert (limited.type, limited.headers()) == ("rate_limit_error", {"Retry-After": "1"})  # whole seconds, >= 1
    assert ServiceError(429, "spent", type_="insufficient_quota", code="insufficient_quota").headers() == {}
    unavailable = Unavailable("retriever at x unreachable")
    assert (unavailable.status, unavailable.type, unavailable.code, unavailable.retryable) == (
        503,
        "server_error",
        "backend_unavailable",
        True,
    )


def test_invalid_request_names_the_deepest_field_and_says_when_json_is_broken():
    union = [
        {"type": "string_type", "loc": ("messages", 0, "content", "str"), "msg": "Input should be a valid string"},
        {
            "type": "literal_error",
            "loc": ("messages", 0, "content", "list[TextPart]", 0, "type"),
            "msg": "Input should be 'text'",
        },
    ]
    error = invalid_request(union)
    assert (error.status, error.param) == (400, "messages")
    assert error.message == "messages.0.content.list[TextPart].0.type: Input should be 'text'"
    broken = invalid_request([{"type": "json_invalid", "loc": (), "msg": "Invalid JSON: EOF"}])
    assert (broken.code, broken.param) == ("invalid_json", None)
    assert broken.message == "body: not valid JSON (Invalid JSON: EOF)"


@pytest.mark.parametrize(
    "status,content,expected",
    [
        (400, json.dumps(ServiceError(400, "texts: empty", param="texts").body()).encode(), ("texts: empty", "texts")),
        (
            413,
            b'{"error": "items: 9 items exceed max_batch_items=4"}',
            ("items: 9 items exceed max_batch_items=4", None),
        ),
        (404, b'[{"error": "task_id not found"}]', ("task_id not found", None)),  # BentoML's one-item list
        (
            400,
            json.dumps(
                {
                    "error": "1 validation error for Input",
                    "detail": [{"type": "too_short", "loc": ["texts"], "msg": "List should have at least 1 item"}],
                }
            ).encode(),
            ("texts: List should have at least 1 item", "texts"),
        ),
        (405, b'{"detail": "Method Not Allowed"}', ("Method Not Allowed", None)),
        (404, b"Not Found", ("Not Found", None)),
        (502, b"", ("HTTP 502", None)),
    ],
)
def test_error_from_answer_reads_every_shape_a_service_answers(status, content, expected):
    error = error_from_answer(status, content, "7")
    assert (error.message, error.param) == expected
    assert error.status == status
    assert error.retry_after_s == 7.0


# ---- the handler set on real ASGI apps ----------------------------------------------------------


class Body(BaseModel):
    texts: list[str] = Field(min_length=1)


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.post("/embed")
    async def embed(body: Body) -> dict:
        if body.texts == ["refuse"]:
            raise ServiceError(413, "texts: too many", param="texts")
        if body.texts == ["crash"]:
            raise RuntimeError("a bug")
        return {"n": len(body.texts)}

    install_handlers(app)
    return app


def bentoml_like_app() -> Starlette:
    """Answers as BentoML does: its own error bodies, plain-text 404s, and a crash nobody answers."""

    async def validation(_):
        return JSONResponse(
            {
                "error": "1 validation error",
                "detail": [
                    {"type": "string_too_long", "loc": ["texts", 0], "msg": "String should have at most 8 characters"}
                ],
            },
            status_code=400,
        )

    async def overloaded(_):
        return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "3"})

    async def crash(_):
        raise RuntimeError("nobody answers this")

    async def fine(_):
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/validate", validation, methods=["POST"]),
            Route("/busy", overloaded),
            Route("/crash", crash),
            Route("/fine", fine, methods=["POST"]),
            Route("/plain", lambda _: PlainTextResponse("Not Found", status_code=404)),
        ]
    )


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def run():
        transport = httpx.ASGITransport(app=OpenAIErrors(app), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://bento") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def test_fastapi_apps_answer_validation_refusals_routes_and_bugs_in_openai_s_shape():
    app = fastapi_app()
    invalid = call(app, "POST", "/embed", json={"texts": []})
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "texts"
    assert invalid.json()["error"]["message"].startswith("texts: ")
    refused = call(app, "POST", "/embed", json={"texts": ["refuse"]})
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "too_large"
    missing = call(app, "GET", "/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "GET /nowhere: Not Found"
    crashed = call(app, "POST", "/embed", json={"texts": ["crash"]})
    assert crashed.status_code == 500 and crashed.json()["error"] == {
        "message": "internal error: RuntimeError",
        "type": "server_error",
        "param": None,
        "code": "internal_error",
    }
    assert call(app, "POST", "/embed", json={"texts": ["a", "b"]}).json() == {"n": 2}


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain", ""],
)
def test_a_body_that_is_not_json_is_a_415_before_anything_parses_it(content_type):
    for app in (fastapi_app(), bentoml_like_app()):
        response = call(app, "POST", "/embed", content=b'{"texts": ["a"]}', headers={"content-type": content_type})
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media_type"


def test_json_and_no_content_type_pass_and_successes_are_untouched():
    app = bentoml_like_app()
    for headers in ({"content-type": "application/json; charset=utf-8"}, {}):
        response = call(app, "POST", "/fine", content=b"{}", headers=headers)
        assert response.status_code == 200 and response.json() == {"ok": True}
    assert (
        call(
            fastapi_app(),
            "POST",
            "/embed",
            content=b'{"texts": ["a"]}',
            headers={"content-type": "application/merge-patch+json"},
        ).status_code
        == 200
    )


def test_what_bentoml_answers_itself_is_reshaped_keeping_status_and_headers():
    app = bentoml_like_app()
    invalid = call(app, "POST", "/validate", json={})
    assert invalid.status_code == 400 and invalid.json()["error"] == {
        "message": "texts.0: String should have at most 8 characters",
        "type": "invalid_request_error",
        "param": "texts",
        "code": "invalid_value",
    }
    busy = call(app, "GET", "/busy")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
    assert busy.json()["error"]["message"] == "busy" and busy.headers["content-length"] == str(len(busy.content))
    plain = call(app, "GET", "/plain")
    assert plain.status_code == 404 and plain.json()["error"]["message"] == "GET /plain: Not Found"
    crashed = call(app, "GET", "/crash")
    assert crashed.status_code == 500 and crashed.json()["error"]["code"] == "internal_error"


def test_answers_errors_keeps_what_bentoml_reads_of_a_method():
    class Service:
        @answers_errors
        def check(self, text: str, policy: str = "default") -> dict:
            raise ServiceError(400, f"policy: unknown policy {policy!r}", param="policy")

        @answers_errors
        async def check_batch(self, items: list[str]) -> dict:
            raise ServiceError(413, "items: too many", param="items")

    service = Service()
    assert not inspect.iscoroutinefunction(Service.check) and inspect.iscoroutinefunction(Service.check_batch)
    assert list(inspect.signature(Service.check).parameters) == ["self", "text", "policy"]
    answer = service.check("hi", "nope")
    assert answer.status_code == 400 and json.loads(answer.body)["error"]["param"] == "policy"
    assert asyncio.run(service.check_batch(["a"])).status_code == 413


# ---- the base client against a real HTTP server -------------------------------------------------


class Scripted(BaseHTTPRequestHandler):
    """Answers each path from a script: a list of (status, body, headers), one per request."""

    scripts: dict[str, list[tuple[int, bytes, dict]]] = {}
    calls: dict[str, int] = {}

    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Scripted.calls[self.path] = Scripted.calls.get(self.path, 0) + 1
        script = Scripted.scripts[self.path]
        status, body, headers = script[min(Scripted.calls[self.path], len(script)) - 1]
        if status == 0:  # answer nothing in time
            threading.Event().wait(2)
            status, body, headers = 200, b"{}", {}
        self.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def scripted() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def script(*answers: tuple[int, bytes, dict]) -> str:
    path = f"/{uuid.uuid4().hex}"
    Scripted.scripts[path] = list(answers)
    return path


def test_5xx_and_429_are_retried_and_a_success_returned(scripted):
    path = script((503, b'{"error": "loading"}', {}), (429, b"", {"Retry-After": "1"}), (200, b'{"ok": 1}', {}))
    client = ServiceClient("thing", scripted, attempts=3)
    assert client.request("POST", path, json={}).json() == {"ok": 1} and Scripted.calls[path] == 3
    client.close()


def test_unavailable_after_the_attempts_with_what_the_service_said(scripted):
    path = script((503, json.dumps(Unavailable("collection 'c' is empty").body()).encode(), {"Retry-After": "4"}))

    async def scenario():
        async with ServiceClient("retriever", scripted, attempts=2) as client:
            await client.arequest("POST", path, json={})

    with pytest.raises(Unavailable) as unavailable:
        asyncio.run(scenario())
    assert str(unavailable.value) == f"retriever at {scripted} answered 503: collection 'c' is empty"
    assert unavailable.value.retry_after_s == 4.0 and Scripted.calls[path] == 2


def test_a_4xx_is_rejected_at_once_with_the_service_s_error(scripted):
    refusal = ServiceError(413, "text: 9 bytes exceed max_text_bytes=4", param="text")
    path = script((413, json.dumps(refusal.body()).encode(), {}))
    with pytest.raises(Rejected) as rejected:
        ServiceClient("safety", scripted, attempts=3).request("POST", path, json={})
    assert Scripted.calls[path] == 1
    error = rejected.value.error
    assert (error.status, error.message, error.param) == (413, refusal.message, "text")
    assert rejected.value.service == "safety"


def test_nobody_listening_is_retried_then_unavailable_and_a_timeout_is_not_retried(scripted):
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable) as unreachable:
        ServiceClient("embedder", nobody, attempts=2).request("POST", "/embed", json={})
    assert unreachable.value.retryable and f"embedder at {nobody} unreachable" in str(unreachable.value)
    slow = script((0, b"", {}))
    with pytest.raises(Unavailable) as timed_out:
        ServiceClient("embedder", scripted, attempts=3, timeout_s=0.3).request("POST", slow, json={})
    assert not timed_out.value.retryable and Scripted.calls[slow] == 1
    assert str(timed_out.value) == f"embedder at {scripted} did not answer within 0.3 s"


# ---- metrics and token estimates ----------------------------------------------------------------


def test_metrics_exist_once_first_counted_and_a_second_declaration_is_the_same_metric():
    name = f"ragyard_test_{uuid.uuid4().hex[:8]}"
    declared = counter(name, "a test counter", ["kind"])
    assert prometheus_client.REGISTRY.get_sample_value(f"{name}_total", {"kind": "a"}) is None
    declared.labels(kind="a").inc()
    again = counter(name, "a test counter", ["kind"])  # a module imported twice declares it twice
    again.labels(kind="a").inc(2)
    assert prometheus_client.REGISTRY.get_sample_value(f"{name}_total", {"kind": "a"}) == 3.0
    with pytest.raises(ValueError, match="declared twice, differently"):
        histogram(name, "a test counter", ["kind"]).observe(1.0)


def test_token_estimate_and_bound():
    contents = ["How do I read a file?", "é" * 40]
    assert estimate_tokens("x" * 41) == 10
    assert estimate_prompt_tokens(contents) == (21 + 40) // 4 + 2 * 4
    assert estimate_prompt_tokens(contents, extra_chars=400) == (21 + 40 + 400) // 4 + 2 * 4
    # Never fewer tokens than a byte-level BPE could make: one per UTF-8 byte, plus the template's.
    assert max_prompt_tokens(contents) == 21 + 80 + 64 + 8 * 2
    assert max_prompt_tokens(contents, extra_bytes=100, extra_messages=1) == 21 + 80 + 100 + 64 + 8 * 3

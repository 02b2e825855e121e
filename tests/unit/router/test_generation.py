"""The router's generation client against a real HTTP server on loopback, with the `openai` client
and the HTTP library it resolves to in the lock (httpx2 since openai 3.57).

2026-12-07: httpx2 2.17.0 began to reject the `httpx.Timeout` the router passed to `AsyncOpenAI`,
and every chat answered 500. These tests make real requests through `Generator`, so a timeout (or
any other option) the client no longer accepts fails here, not in front of a user.
"""

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ragyard.kit.errors import Rejected, ServiceError, Unavailable
from router.catalog import CatalogEntry, Upstream
from router.generation import Generated, Generator
from router.resilience import Breakers, Deadline
from router.routing.base import ModelCard

ANSWER = "Use a for loop over the file object."


def completion(model: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
    }


CALL = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "2+2"}'}}


def sse_chunk(model: str, content: str | None = None, tool_calls: list | None = None) -> bytes:
    delta = {"content": content} if tool_calls is None else {"tool_calls": tool_calls}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


class Upstreams(BaseHTTPRequestHandler):
    """Model "good" answers (whole or streamed); model "cut" streams one chunk, then the connection
    drops in the middle of the body, as an upstream that crashes mid-answer does; model "call" answers
    with a tool call, "cutcall" streams half of one and drops; model "down" answers 503 and model
    "refuse" 400, in OpenAI's error shape."""

    protocol_version = "HTTP/1.1"
    calls: dict[str, int] = {}

    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        request = json.loads(self.rfile.read(int(self.headers["content-length"])))
        model = request["model"]
        Upstreams.calls[model] = Upstreams.calls.get(model, 0) + 1
        if model in ("down", "refuse"):
            status = 503 if model == "down" else 400
            body = json.dumps(ServiceError(status, f"{model}: no", param="messages").body()).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not request.get("stream"):
            answer = completion(model)
            if model == "call":
                answer["choices"][0].update(
                    message={"role": "assistant", "content": None, "tool_calls": [CALL]}, finish_reason="tool_calls"
                )
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        pieces = [sse_chunk(model, word + " ") for word in ANSWER.split()] + [b"data: [DONE]\n\n"]
        if model == "cut":
            pieces = pieces[:1]
        if model == "cutcall":  # the call's id and name, then the connection drops
            pieces = [
                sse_chunk(
                    model,
                    tool_calls=[
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "calculator", "arguments": ""},
                        }
                    ],
                )
            ]
        for piece in pieces:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        if model in ("cut", "cutcall"):
            self.close_connection = True  # no terminating chunk: the body is incomplete
            return
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstreams)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream(url=f"http://127.0.0.1:{server.server_address[1]}", api_key="unused")
    finally:
        server.shutdown()
        server.server_close()


def entry(name: str, upstream: Upstream) -> CatalogEntry:
    return CatalogEntry(ModelCard(name, 4096, 0.001, 0.002), upstream, "llama_cpp", "USD")


def generator(attempts: int = 1) -> Generator:
    return Generator(Breakers(failures=5, reset_s=30), attempts=attempts, first_token_timeout_s=10)


MESSAGES = [{"role": "user", "content": "How do I read a file line by line?"}]


def test_a_whole_answer_through_the_openai_client(upstream):
    result = asyncio.run(generator().complete([entry("good", upstream)], MESSAGES, {"max_tokens": 16}, Deadline(30)))
    assert result.text == ANSWER
    assert (result.model, result.prompt_tokens, result.completion_tokens) == ("good", 12, 8)
    assert result.cost == pytest.approx((12 * 0.001 + 8 * 0.002) / 1000)


def test_a_stream_cut_mid_body_falls_back_to_the_next_model(upstream):
    async def collect() -> tuple[list[str], Generated]:
        result = Generated()
        chain = [entry("cut", upstream), entry("good", upstream)]
        deltas = [d async for d in generator().stream(chain, MESSAGES, {"max_tokens": 16}, Deadline(30), result)]
        return deltas, result

    deltas, result = asyncio.run(collect())
    # The cut stream's first word reached the client, then the next model continued the answer.
    assert deltas[0] == "Use "
    assert "".join(deltas) == "Use " + " ".join(ANSWER.split()) + " "
    assert [a.model for a in result.attempts] == ["cut", "good"]
    assert result.attempts[0].error  # the transport error of the cut stream, not an exception to the client
    assert result.fallbacks == [{"model": "cut", "error": result.attempts[0].error}]


def test_a_failing_upstream_is_retried_then_the_next_model_answers(upstream):
    Upstreams.calls.clear()
    chain = [entry("down", upstream), entry("good", upstream)]
    result = asyncio.run(generator(attempts=2).complete(chain, MESSAGES, {"max_tokens": 16}, Deadline(30)))
    assert result.text == ANSWER and result.model == "good"
    assert Upstreams.calls == {"down": 2, "good": 1}  # the clients' one retry policy, then the fallback
    assert result.fallbacks == [{"model": "down", "error": result.attempts[0].error}]
    assert "503" in result.attempts[0].error


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_refuses_the_request_is_rejected_without_retry_or_fallback(upstream, stream):
    Upstreams.calls.clear()
    chain = [entry("refuse", upstream), entry("good", upstream)]

    async def ask():
        if not stream:
            return await generator(attempts=3).complete(chain, MESSAGES, {"max_tokens": 16}, Deadline(30))
        return [
            d
            async for d in generator(attempts=3).stream(chain, MESSAGES, {"max_tokens": 16}, Deadline(30), Generated())
        ]

    with pytest.raises(Rejected) as rejected:
        asyncio.run(ask())
    assert (rejected.value.error.status, rejected.value.error.message) == (400, "refuse: no")
    assert Upstreams.calls == {"refuse": 1}


def test_a_tool_call_answer_keeps_its_calls(upstream):
    result = asyncio.run(generator().complete([entry("call", upstream)], MESSAGES, {"max_tokens": 16}, Deadline(30)))
    assert result.text == "" and result.finish_reason == "tool_calls"
    assert result.tool_calls == [CALL]


def test_a_stream_cut_in_the_middle_of_a_tool_call_is_not_continued_by_another_model(upstream):
    Upstreams.calls.clear()
    result = Generated()

    async def collect():
        chain = [entry("cutcall", upstream), entry("good", upstream)]
        return [d async for d in generator().stream(chain, MESSAGES, {"max_tokens": 16}, Deadline(30), result)]

    with pytest.raises(Unavailable) as failed:
        asyncio.run(collect())
    assert "in the middle of a tool call" in failed.value.message
    assert Upstreams.calls == {"cutcall": 1}  # the next model was never asked
    assert result.tool_deltas[0]["function"]["name"] == "calculator"
    assert result.attempts[0].error and result.attempts[0].usage_estimated  # what was generated is charged

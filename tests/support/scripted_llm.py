"""An OpenAI-compatible model server whose "model" follows a script, run as its own process (``python
-m tests.support.scripted_llm PORT REQUESTS_FILE``, in a `Stack` by `scripted_spec`): which tool a
real small model calls, and with which arguments, cannot be chosen, and a test of the tool loop or
of the checks on a call's arguments needs a given call. Everything around it is real: the LLM
bento's `openai` backend in front of it, the router, the safety bento. Every request body it
receives is appended to REQUESTS_FILE as a JSON line, so a test can see what reached the model.

The first user message may be a script: ``SCRIPT {"calls": [[name, arguments], ...]}``. With k tool
messages in the conversation so far, the model calls ``calls[k]`` while tools are offered; once the
script is done it answers ``ANSWER after k tools: <each tool message>``. Any other conversation: the
first offered tool is called with ``{"location": "Paris, France"}`` until a tool message is there,
then it answers ``The weather in Paris: <the tool message>``; without tools it says ``Hello.``.
A request for JSON (`response_format`) is answered with what follows ``REPLY `` on its last user
message's line (``{}`` without one): the memory bento's extraction, say, given the operations to apply.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ragyard.service_spec import ServiceSpec
from tests.support.paths import REPO_ROOT

MODEL = "scripted"
PREFIX = "SCRIPT "
JSON_REPLY = "REPLY "


def script(*calls: tuple[str, dict | str]) -> str:
    """The user message that makes the model call `calls` in turn."""
    return PREFIX + json.dumps({"calls": [list(c) for c in calls]})


def script_of(messages: list[dict]) -> dict | None:
    first = next((m.get("content") or "" for m in messages if m["role"] == "user"), "")
    return json.loads(first[len(PREFIX) :]) if isinstance(first, str) and first.startswith(PREFIX) else None


def reply(body: dict) -> tuple[str | None, list[dict] | None]:
    """(content, tool calls) for a request body."""
    messages = body["messages"]
    if body.get("response_format"):
        last = next((str(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")
        _, found, rest = last.partition(JSON_REPLY)
        return (rest.splitlines()[0] if found else "{}"), None
    observed = [str(m.get("content")) for m in messages if m["role"] == "tool"]
    script = script_of(messages)
    if script is not None:
        calls = script.get("calls", [])
        if body.get("tools") and len(observed) < len(calls):
            name, arguments = calls[len(observed)]
            return None, [call(name, arguments)]
        return f"ANSWER after {len(observed)} tools: " + " | ".join(observed), None
    if observed:
        return f"The weather in Paris: {observed[-1]}", None
    if body.get("tools") and body.get("tool_choice") != "none":
        return None, [call(body["tools"][0]["function"]["name"], {"location": "Paris, France"})]
    return "Hello.", None


def call(name: str, arguments: dict | str) -> dict:
    """A call; arguments given as JSON text are decoded first (so a script can write "\\u0040" for
    an "@" the input check must not see, and the model still sends "@")."""
    text = json.dumps(json.loads(arguments) if isinstance(arguments, str) else arguments)
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": {"name": name, "arguments": text}}


class Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests_file: Path

    def log_message(self, *_args) -> None:
        pass

    def send_json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.send_json(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]}
        )

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with self.requests_file.open("a") as log:
            log.write(json.dumps(body) + "\n")
        content, calls = reply(body)
        usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
        finish = "tool_calls" if calls else "stop"
        message = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
        base = {"id": "chatcmpl-scripted", "created": int(time.time()), "model": MODEL}
        if not body.get("stream"):
            self.send_json(
                {
                    **base,
                    "object": "chat.completion",
                    "usage": usage,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                }
            )
            return
        deltas = (
            [{"role": "assistant", "content": content}]
            if content
            else [{"tool_calls": [{"index": i, **c}]} for i, c in enumerate(calls or [])]
        )
        chunks = [
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": d, "finish_reason": None}]}
            for d in deltas
        ]
        chunks.append(
            {**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        )
        chunks.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def scripted_spec(name: str, port: int, requests_file: Path) -> ServiceSpec:
    """The server as a service of a `tests.support.stack.Stack`, on 127.0.0.1:port; its base URL (with
    /v1) is ``f"{stack.url(name)}/v1"``."""
    return ServiceSpec(
        name=name,
        argv=[sys.executable, "-m", "tests.support.scripted_llm", str(port), str(requests_file)],
        health_url=f"http://127.0.0.1:{port}/v1/models",
        ui_url=f"http://127.0.0.1:{port}",
        cwd=str(REPO_ROOT),
        startup_timeout_s=60,
    )


def main() -> None:
    port, requests_file = int(sys.argv[1]), Path(sys.argv[2])
    Scripted.requests_file = requests_file
    ThreadingHTTPServer(("127.0.0.1", port), Scripted).serve_forever()


if __name__ == "__main__":
    main()

"""The router's parts that keep no state: the state URL's check, the circuit breaker, the OTLP encoding,
the Langfuse exporter, and an unreachable state database (the stores themselves: tests/integration).

The Langfuse server cannot run on this machine (it needs Postgres, ClickHouse and its web app), so
its ingestion endpoint is played by a small recording HTTP server in a thread: what is checked is what
the real Langfuse SDK sends.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from ragyard.settings import Settings
from router.keys import KeyStore
from router.resilience import CircuitBreaker
from router.tracing import (
    Generation,
    LangfuseExporter,
    Trace,
    new_trace_id,
    otlp_request,
)


def test_state_url_must_be_a_postgres_url():
    assert Settings(router={"state_url": "postgresql://u:p@db.example/ragyard"}).router.state_url
    with pytest.raises(ValidationError, match="router.state_url"):
        Settings(router={"state_url": "mysql://u:p@db.example/ragyard"})


def test_circuit_breaker_opens_lets_one_trial_through_and_closes():
    breaker = CircuitBreaker("llm", failures=2, reset_s=0.2)
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    time.sleep(0.25)
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state == "open"
    time.sleep(0.25)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def _trace() -> Trace:
    trace = Trace(
        new_trace_id(),
        "chat.completions",
        "user-1",
        "session-1",
        input="what is a list?",
        attributes={"model.requested": "ragyard/auto"},
    )
    with trace.span("retrieve", top_k=3):
        pass
    with pytest.raises(RuntimeError), trace.span("generate"):
        raise RuntimeError("upstream down")
    now = time.time_ns()
    trace.generation = Generation(
        "smol", 120, 30, 0.0012, "USD", "ragyard-rag", 2, {"policy": "cheapest"}, False, now - 1000, now, []
    )
    trace.finish("A list is a sequence.")
    return trace


def test_otlp_encoding_has_a_root_span_steps_and_the_generation():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    trace = _trace()
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp_request(trace))
    spans = request.resource_spans[0].scope_spans[0].spans
    root = spans[0]
    assert root.trace_id.hex() == trace.trace_id and not root.parent_span_id
    assert [s.name for s in spans] == ["chat.completions", "retrieve", "generate", "generation"]
    assert all(s.parent_span_id == root.span_id for s in spans[1:])
    assert spans[2].status.code == spans[2].status.STATUS_CODE_ERROR
    attributes = {a.key: a.value for a in spans[3].attributes}
    assert attributes["gen_ai.usage.input_tokens"].int_value == 120
    assert attributes["ragyard.cost"].double_value == pytest.approx(0.0012)
    assert attributes["ragyard.prompt.version"].int_value == 2


class _Recorder(BaseHTTPRequestHandler):
    batches: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received = json.loads(body)
        type(self).batches.append((self.path, received))
        scores = self.path.endswith("/scores")  # the score API answers with the score's id
        self.send_response(200 if scores else 207)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"id": received["id"]} if scores else {"successes": [], "errors": []}).encode())

    def log_message(self, *args):
        pass


def test_langfuse_exporter_sends_one_trace_with_spans_a_generation_and_scores():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = LangfuseExporter(f"http://127.0.0.1:{server.server_port}", "pk-test", "sk-test")
        trace = _trace()
        exporter.export(trace)
        exporter.score(trace.trace_id, "thumbs", 1.0, "good", "event-1")
        exporter.flush()
    finally:
        server.shutdown()
    events = [e for path, batch in _Recorder.batches if path.endswith("/ingestion") for e in batch["batch"]]
    by_type: dict[str, list] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event["body"])
    assert [t["id"] for t in by_type["trace-create"]] == [trace.trace_id]
    assert {s["name"] for s in by_type["span-create"]} == {"retrieve", "generate"}
    generation = by_type["generation-create"][0]
    assert generation["model"] == "smol" and generation["traceId"] == trace.trace_id
    assert generation["usageDetails"] == {"input": 120, "output": 30}
    assert generation["costDetails"] == {"total": 0.0012}
    assert generation["metadata"]["prompt_version"] == 2
    # The score goes at once through the API, not the batch: the feedback event is acked after it.
    [score] = [body for path, body in _Recorder.batches if path.endswith("/scores")]
    assert score == {"id": "event-1", "traceId": trace.trace_id, "name": "thumbs", "value": 1.0, "comment": "good"}


def test_an_unreachable_state_database_is_a_503_to_retry_not_a_500():
    import asyncio

    import sqlalchemy.exc

    from bentos.router.service import openai_app

    with pytest.raises(sqlalchemy.exc.OperationalError) as down:
        KeyStore("postgresql://ragyard@127.0.0.1:1/ragyard")  # nothing listens on port 1
    handler = openai_app.exception_handlers[sqlalchemy.exc.OperationalError]
    response = asyncio.run(handler(None, down.value))
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert json.loads(response.body)["error"]["code"] == "state_unavailable"

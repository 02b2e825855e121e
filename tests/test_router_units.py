"""The router's parts on their own: key store, limits under threads, circuit breaker, caches,
memory, the OTLP encoding, and the Langfuse exporter. The stores run on both state backends:
SQLite files and a real PostgreSQL server.

The Langfuse server cannot run on this machine (it needs Postgres, ClickHouse and its web app), so
its ingestion endpoint is played by a small recording HTTP server: what is checked is what the
real Langfuse SDK sends.
"""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from pydantic import ValidationError

from ragyard.settings import Settings
from router.cache import ResponseCache
from router.keys import COMPLETION_RETENTION_S, KeyStore
from router.limits import LimitExceeded, Limits
from router.memory import Memory
from router.resilience import CircuitBreaker
from router.state import database, query
from router.tracing import Generation, LangfuseExporter, Trace, new_trace_id, otlp_request
from tests.conftest import new_database


@pytest.fixture(params=["sqlite", "postgres"])
def state(request, tmp_path) -> Settings:
    """Settings whose router state is in SQLite files under a fresh home, or in a fresh Postgres database."""
    url = new_database(request.getfixturevalue("postgres")) if request.param == "postgres" else ""
    return Settings(home=tmp_path / "home", router={"state_url": url})


@pytest.fixture
def store(state):
    store = KeyStore(database(state, "keys"))
    yield store
    store.close()


def test_keys_authenticate_only_the_exact_secret_and_not_after_revoking(store):
    key, secret = store.create("app", budget=1.0, rpm=10)
    assert store.authenticate(secret).id == key.id
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.authenticate(f"rg-deadbeef-{secret.split('-', 2)[2]}") is None
    assert store.authenticate("not a key") is None
    assert store.revoke(key.id) and not store.revoke(key.id)
    assert store.authenticate(secret) is None


def test_concurrent_reservations_never_exceed_the_budget(state):
    # Two stores on one database: two router processes (or replicas) share the budget.
    stores = [KeyStore(database(state, "keys")) for _ in range(2)]
    key, _ = stores[0].create("app", budget=1.0)
    limits = [Limits(s) for s in stores]

    def request(i: int) -> float:
        try:
            reservation = limits[i % 2].reserve(key.id, worst_cost=0.3, tokens=10)
        except LimitExceeded:
            return 0.0
        time.sleep(0.01)
        limits[i % 2].settle(reservation, cost=0.25, tokens=10)
        return 0.25

    with ThreadPoolExecutor(16) as pool:
        charged = sum(pool.map(request, range(64)))
    spent = stores[0].get(key.id).spent
    assert spent == pytest.approx(charged) and spent <= 1.0
    assert spent >= 0.5  # budget was used, not refused wholesale
    with pytest.raises(LimitExceeded) as refused:
        limits[0].reserve(key.id, worst_cost=1.0 - spent + 1e-9, tokens=1)
    assert refused.value.code == "insufficient_quota" and refused.value.retry_after_s is None
    for store in stores:
        store.close()


def test_request_and_token_windows_slide(store):
    key, _ = store.create("app", rpm=2, tpm=100)
    limits = Limits(store)
    now = 1_000_000.0
    first = limits.reserve(key.id, 0.0, 30, now=now)
    limits.reserve(key.id, 0.0, 30, now=now + 1)
    with pytest.raises(LimitExceeded) as rpm:
        limits.reserve(key.id, 0.0, 30, now=now + 2)
    assert rpm.value.code == "rate_limit_exceeded" and rpm.value.retry_after_s == pytest.approx(58)
    assert limits.reserve(key.id, 0.0, 30, now=now + 61)  # the first request left the window
    limits.settle(first, 0.0, 90)  # the real count replaces the estimate
    with pytest.raises(LimitExceeded) as too_big:
        limits.reserve(key.id, 0.0, 101, now=now + 62)
    assert too_big.value.code == "tokens_exceed_limit" and too_big.value.retry_after_s is None


def test_a_reservation_records_which_key_owns_the_answer(store):
    first, _ = store.create("app")
    second, _ = store.create("other")
    limits = Limits(store)
    now = 1_000_000.0
    limits.reserve(first.id, 0.0, 1, now=now, completion_id="t1")
    assert store.completion_owner("t1", now) == first.id and store.completion_owner("t2", now) is None
    limits.reserve(second.id, 0.0, 1, now=now + 1, completion_id="t1")  # the same id again: the last owner
    assert store.completion_owner("t1", now + 1) == second.id
    later = now + 1 + COMPLETION_RETENTION_S + 1
    assert store.completion_owner("t1", later) is None  # expired, whether or not its row was cleaned up yet
    limits.reserve(second.id, 0.0, 1, now=later, completion_id="t2")  # cleans up the key's expired rows
    assert [r[0] for r in query(store.engine, "SELECT trace_id FROM completions WHERE key_id = :key",
                                key=second.id)] == ["t2"]


def test_stores_starting_together_on_one_postgres_database_all_start(postgres):
    # Replicas start at once and each creates the tables it needs: none may fail on the others' DDL.
    url = new_database(postgres)
    barrier = threading.Barrier(6)

    def start(_):
        barrier.wait()
        stores = [KeyStore(url), ResponseCache(url, 10, 10, 0.9), Memory(url, 2, 10)]
        for store in stores:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))
    store = KeyStore(url)
    assert store.create("after")[0].name == "after"
    store.close()


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


def test_caches_respect_scope_threshold_ttl_and_size(state):
    cache = ResponseCache(database(state, "cache"), ttl_s=10, max_entries=3, threshold=0.9)
    v = np.array([1.0, 0.0], dtype=np.float32)
    cache.put("k1", "scope-a", "what is a list", v, {"text": "A list."}, now=100)
    assert cache.exact("k1", now=105).payload == {"text": "A list."}
    assert cache.exact("k1", now=111) is None  # expired
    near = np.array([0.95, np.sqrt(1 - 0.95**2)], dtype=np.float32)
    far = np.array([0.5, np.sqrt(0.75)], dtype=np.float32)
    hit = cache.semantic("scope-a", near, now=105)
    assert hit.kind == "semantic" and hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert cache.semantic("scope-a", far, now=105) is None
    assert cache.semantic("scope-b", v, now=105) is None  # another model, parameters or index version
    for i in range(2, 6):
        cache.put(f"k{i}", "scope-a", f"q{i}", None, {"text": str(i)}, now=106)
    assert cache.exact("k1", now=106) is None and cache.exact("k5", now=106) is not None  # bounded
    cache.close()


def test_memory_keeps_the_last_turns_per_session_and_key(state):
    memory = Memory(database(state, "memory"), max_turns=2, max_sessions=10)
    for i in range(3):
        memory.append("s1", "key-a", f"q{i}", f"a{i}")
    assert [m["content"] for m in memory.history("s1", "key-a")] == ["q1", "a1", "q2", "a2"]
    assert memory.history("s1", "key-b") == []  # another key never sees the session
    memory.close()


def _trace() -> Trace:
    trace = Trace(new_trace_id(), "chat.completions", "user-1", "session-1", input="what is a list?",
                  attributes={"model.requested": "ragyard/auto"})
    with trace.span("retrieve", top_k=3):
        pass
    with pytest.raises(RuntimeError), trace.span("generate"):
        raise RuntimeError("upstream down")
    now = time.time_ns()
    trace.generation = Generation("smol", 120, 30, 0.0012, "USD", "ragyard-rag", 2, {"policy": "cheapest"}, False,
                                  now - 1000, now, [])
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

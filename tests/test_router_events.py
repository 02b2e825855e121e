"""Feedback and document changes through the real router bento while the broker goes down and comes
back: every feedback request is answered 202 (broker confirm or outbox), every score reaches MLflow
exactly once, every negative score flags its answer exactly once, nothing is dead-lettered; the
document webhook is for admin keys and refuses paths outside a source."""

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from ragyard.events.consumer import Consumer
from ragyard.events.store import EventStore
from ragyard.events.topology import DOCUMENTS, FLAGS, TOPOLOGY
from ragyard.settings import MlflowSettings, RouterSettings, Settings, settings_env
from router.tracing import SCORE_ID_KEY, MlflowOtlpExporter, Trace
from tests.broker_support import LocalBroker, depth, drain, running_broker
from tests.conftest import serving_bento

N = 120  # feedback requests per outage


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker of this module's own: its tests stop it."""
    with running_broker(tmp_path_factory.mktemp("broker")) as local:
        yield local


@pytest.fixture(scope="module")
def router(tmp_path_factory, broker, mlflow_server):
    home = tmp_path_factory.mktemp("router-events")
    settings = Settings(home=home, mlflow=MlflowSettings(url=mlflow_server, run_local=False),
                        router=RouterSettings(require_api_key=True, safety_enabled=False, cache_enabled=False,
                                              trace_experiment=f"router-events-{uuid.uuid4().hex[:6]}"),
                        broker=broker.config)
    env = {**settings_env(settings), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with serving_bento("bentos.router.service:Router", home, env) as url:
        yield url, settings, env


def make_key(env: dict, *flags: str) -> str:
    made = subprocess.run([sys.executable, "-m", "ragyard", "keys", "create", "--name", "t", "--json", *flags],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(made.stdout)["key"]


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith((name + " ", name + "{")))


def assessments(mlflow_url: str, trace_id: str) -> list[dict]:
    found = httpx.get(f"{mlflow_url}/api/3.0/mlflow/traces/tr-{trace_id}", timeout=30)
    found.raise_for_status()
    return found.json()["trace"]["trace_info"].get("assessments", [])


def owned_traces(settings: Settings, key: str, count: int) -> list[str]:
    """Traces in MLflow, as answers would leave them, each recorded as asked by `key` (feedback is
    its owner's)."""
    from router.keys import KeyStore
    from router.state import database

    exporter = MlflowOtlpExporter(settings.mlflow.url, settings.router.trace_experiment)
    store = KeyStore(database(settings, "keys"))
    key_id = key.split("-")[1]
    ids = []
    for _ in range(count):
        trace = Trace(uuid.uuid4().hex, "chat.completions", None, None, input="q")
        trace.finish(output="a")
        exporter.export(trace)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO completions (trace_id, key_id, created_at) VALUES (?, ?, ?)",
                                 (trace.trace_id, key_id, time.time()))
        ids.append(trace.trace_id)
    store.close()
    return ids


def flags_for(settings: Settings, broker: LocalBroker, trace_ids: set[str], tmp_path) -> Counter:
    """The review queue's flags for these answers, through an idempotent consumer (the review bento's
    part to come): how many times each answer was handed to it."""
    calls: Counter = Counter()

    async def consume():
        async def handler(event):
            calls[event.trace_id] += 1

        consumer = Consumer(broker.config, EventStore(tmp_path / "review.sqlite3"), FLAGS, handler, "test-review")
        consumer.start()
        await consumer.link.connected.wait()
        deadline = time.monotonic() + 60
        while trace_ids - set(calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # a duplicate would come now
        await consumer.close()

    asyncio.run(consume())
    return Counter({t: n for t, n in calls.items() if t in trace_ids})


@pytest.mark.parametrize("outage", ["SIGTERM", "SIGKILL"])
def test_feedback_during_a_broker_outage_is_exported_exactly_once(router, broker, tmp_path, outage):
    url, settings, env = router
    key = make_key(env)
    traces = owned_traces(settings, key, N)
    negative = set(traces[::3])  # scored 0: flagged for review too
    answered: dict[str, int] = {}
    outage_seen = {}
    # The last third waits for the outage: a graceful broker stop can outlast the whole batch otherwise.
    broker_down = threading.Event()
    late = set(traces[-(N // 3):])

    def send(trace_id: str) -> None:
        if trace_id in late:
            broker_down.wait(timeout=90)
        value = 0.0 if trace_id in negative else 1.0
        response = httpx.post(f"{url}/v1/feedback", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                              json={"id": f"chatcmpl-{trace_id}", "name": "stars", "value": value})
        answered[trace_id] = response.status_code
        time.sleep(0.05)

    def outage_and_recovery() -> None:
        while len(answered) < N // 3:
            time.sleep(0.05)
        broker.stop() if outage == "SIGTERM" else broker.kill()
        broker_down.set()
        deadline = time.monotonic() + 60
        while (backlog := metric(url, "ragyard_outbox_backlog")) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        outage_seen["backlog"] = backlog
        outage_seen["answered"] = len(answered)
        time.sleep(2)  # requests keep coming while it is down
        broker.start()

    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        chaos = pool.submit(outage_and_recovery)
        list(pool.map(send, traces))
        chaos.result()
    assert Counter(answered.values()) == Counter({202: N})
    assert outage_seen["backlog"] > 0 and outage_seen["answered"] < N

    deadline = time.monotonic() + 180
    while True:
        scored = {t: assessments(settings.mlflow.url, t) for t in traces}
        if all(scored.values()) and metric(url, "ragyard_outbox_backlog") == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    time.sleep(2)  # a late duplicate would show now
    scored = {t: assessments(settings.mlflow.url, t) for t in traces}
    assert {t: len(a) for t, a in scored.items()} == {t: 1 for t in traces}
    assert {a[0]["feedback"]["value"] for t, a in scored.items() if t in negative} == {0.0}
    assert all(a[0]["metadata"][SCORE_ID_KEY] for a in scored.values())
    assert flags_for(settings, broker, negative, tmp_path) == Counter({t: 1 for t in negative})
    assert metric(url, "ragyard_outbox_backlog") == 0
    assert metric(url, "ragyard_events_dropped_total") == 0
    assert asyncio.run(depth(broker.config.amqp_url, TOPOLOGY.dead_letters)) == 0


def test_the_document_webhook_publishes_for_admin_keys_only(router, broker):
    url, _, env = router
    admin, user = make_key(env, "--admin"), make_key(env)
    change = {"source": "docs", "path": "guide/intro.md", "change": "modified"}
    post = lambda key, body: httpx.post(f"{url}/v1/documents/changed", json=body, timeout=30,
                                        headers={"Authorization": f"Bearer {key}"} if key else {})
    assert post(None, change).status_code == 401
    refused = post(user, change)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
    for bad in ({**change, "path": "../etc/passwd"}, {**change, "path": "/etc/passwd"}, {**change, "change": "moved"},
                {"source": "docs"}):
        answer = post(admin, bad)
        assert answer.status_code == 400, answer.text
    accepted = post(admin, change)
    assert accepted.status_code == 202
    messages = asyncio.run(drain(broker.config.amqp_url, TOPOLOGY.queue(DOCUMENTS)))
    [message] = [m for m in messages if m.message_id == accepted.json()["event_id"]]
    expected = {"type": "document.changed", **change, "producer": "router"}
    assert {k: v for k, v in json.loads(message.body).items() if k in expected} == expected

"""`make run`, as the README documents it: services up, URLs printed, index built, crashed services
restarted, `python -m ragyard status`, Ctrl-C stops all."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from pipelines.ledger import Ledger
from ragyard import collection as col
from ragyard.service_spec import ServiceSpec
from ragyard.settings import (
    BrokerSettings,
    CatalogModel,
    DagsterSettings,
    EmbedderSettings,
    LLMSettings,
    MemorySettings,
    MlflowSettings,
    RetrieverSettings,
    ReviewSettings,
    RouterSettings,
    SafetySettings,
    Settings,
    SupervisorSettings,
    ToolsSettings,
    settings_env,
)
from tests.support.cli import ragyard
from tests.support.corpus import write_corpus
from tests.support.network import free_port
from tests.support.paths import REPO_ROOT
from tests.support.stack import Stack

MAKE_RUN = "make-run"


def _wait_for(stack: Stack, pattern: str, timeout_s: float) -> str:
    """The first line of `make run`'s output that matches, once it is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        output = stack.log(MAKE_RUN)
        if match := re.search(pattern, output, re.M):
            return output[match.start() :].split("\n", 1)[0]
        exited = stack.supervisor.exit_reason(MAKE_RUN)
        if exited is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"no line matching {pattern!r} (make run {exited or 'still running'}); output was:\n{output[-5000:]}"
            )
        time.sleep(1)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return ragyard("status", *args, env=env, timeout_s=120)


def _services(env: dict[str, str]) -> dict[str, dict]:
    shown = _status(env, "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return {s["name"]: s for s in json.loads(shown.stdout)["services"]}


def _kill_tree(pid: int) -> None:
    """SIGKILL a service and every process it started (BentoML's workers lead sessions of their own)."""
    service = psutil.Process(pid)
    for member in [service, *service.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()


def _chat(client: openai.OpenAI, model: str) -> str:
    """The model that answered a question (never from the router's cache)."""
    answer = client.chat.completions.create(
        model=model,
        max_tokens=8,
        extra_body={"ragyard": {"cache": False}},
        messages=[{"role": "user", "content": "How do decorators work?"}],
    )
    return answer.model


@pytest.mark.slow
def test_make_run_prints_urls_builds_the_index_survives_crashes_and_stops_cleanly(settings, corpus):
    """One platform start (expensive on 2 cores) for the README's promises: the URLs come first, then the
    index; a crashed LLM or retriever bento makes the router answer 503 meanwhile and is restarted;
    Ctrl-C stops every process, restarted ones and their workers included."""
    write_corpus(corpus, count=4)
    settings.mlflow = MlflowSettings(url=f"http://127.0.0.1:{free_port()}")
    settings.dagster = DagsterSettings(port=free_port())
    settings.milvus.run_local = False  # the session's milvus-lite server stands in for the local one
    settings.embedder = EmbedderSettings(port=free_port())  # its url follows the port
    settings.retriever = RetrieverSettings(port=free_port())
    settings.llm = LLMSettings(
        port=free_port(),
        probe_tokens=4,
        models=[CatalogModel(name="smollm2-135m", model="smollm2-135m", context_length=2048)],
    )
    settings.safety = SafetySettings(port=free_port())
    settings.tools = ToolsSettings(port=free_port())
    settings.memory = MemorySettings(port=free_port())
    settings.review = ReviewSettings(port=free_port())
    settings.router = RouterSettings(port=free_port())
    settings.broker = BrokerSettings(
        port=free_port(),
        management_port=free_port(),
        prometheus_port=free_port(),
        dist_port=free_port(),
        epmd_port=free_port(),
    )
    # A first restart 5-10 s after a crash (and BentoML's start-up on top): time to see the 503s.
    settings.supervisor = SupervisorSettings(restart_backoff_s=10.0)
    env = {**os.environ, **settings_env(settings)}
    # VENV: the environment running these tests (a git worktree has no .venv of its own). `ragyard run`
    # stops its services one after the other: the stack waits long enough before it kills what is left.
    make_run = ServiceSpec(
        MAKE_RUN,
        ["make", "run", f"VENV={Path(sys.executable).parent.parent}"],
        env=settings_env(settings),
        cwd=str(REPO_ROOT),
    )
    processes: list[psutil.Process] = []
    with Stack(settings.home / "stack", stop_timeout_s=300) as stack:
        stack.start(make_run)
        try:
            services = _check_the_running_platform(stack, settings, env, processes)
        finally:
            stack.refresh()  # the services and their workers, for the stack to stop if Ctrl-C does not
            os.killpg(stack.pid(MAKE_RUN), signal.SIGINT)  # what Ctrl-C in the terminal does
            deadline = time.monotonic() + 120
            while stack.supervisor.exit_reason(MAKE_RUN) is None and time.monotonic() < deadline:
                time.sleep(0.5)
        output = stack.log(MAKE_RUN)
        assert stack.supervisor.exit_reason(MAKE_RUN) is not None, output[-5000:]
    assert output.index("READY ") < output.index("index ready: ")  # the URLs come before the index build
    # every service once (mlflow, the broker, dagster dev and the bentos) and the two restarts (the
    # broker's epmd and beam.smp are in its process group: gone with it)
    service_pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", output)]
    assert len(service_pids) == len(services) + 2, output[-5000:]
    stopped = [pid for pid in service_pids if _group_gone(pid, timeout_s=30)]
    assert stopped == service_pids, output[-5000:]
    assert [p for p in processes if p.is_running()] == [], output[-5000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{settings.dagster.url}/server_info")
    final = _status(env)
    assert final.returncode == 3 and "no platform is running" in final.stdout


def _check_the_running_platform(
    stack: Stack, settings: Settings, env: dict[str, str], processes: list[psutil.Process]
) -> dict[str, dict]:
    """The platform is up, serves a RAG answer, and restarts crashed bentos; `processes` gets every process
    it runs at the end, workers included. Returns the services `ragyard status` lists at the end."""
    ready = _wait_for(stack, r"^READY ", timeout_s=600)
    assert f"dagster={settings.dagster.url}" in ready and f"mlflow={settings.mlflow.url}" in ready
    assert f"router={settings.router.url}" in ready and f"llm={settings.llm.url}" in ready
    assert f"broker=http://127.0.0.1:{settings.broker.management_port}" in ready
    _wait_for(stack, r"index ready: ", timeout_s=900)

    assert httpx.get(f"{settings.dagster.url}/server_info").status_code == 200
    assert httpx.get(f"{settings.mlflow.url}/health").text == "OK"
    ledger = Ledger(settings.ledger_path)
    assert len(ledger.entries()) == 5
    client = col.connect(settings.milvus.uri)
    assert col.row_count(client, settings.milvus.collection) == ledger.chunk_total() > 0
    hits = httpx.post(f"{settings.retriever.url}/search", json={"query": "how do decorators work"}, timeout=60).json()[
        "hits"
    ]
    assert hits[0]["doc_id"] == "docs:guide/decorators.rst"

    created = ragyard("keys", "create", "--name", "crash-test", "--json", env=env, check=True, timeout_s=120)
    router = openai.OpenAI(
        base_url=f"{settings.router.url}/v1", api_key=json.loads(created.stdout)["key"], max_retries=0, timeout=300
    )
    assert _chat(router, "ragyard/smollm2-135m") == "smollm2-135m"
    before = _services(env)
    assert {s["state"] for s in before.values()} == {"up"}

    for name in ("llm", "retriever"):
        _kill_tree(before[name]["pid"])
    with pytest.raises(openai.APIStatusError) as no_retriever:
        _chat(router, "ragyard/smollm2-135m")
    assert no_retriever.value.status_code == 503
    assert f"retriever at {settings.retriever.url}" in no_retriever.value.message
    with pytest.raises(openai.APIStatusError) as no_llm:
        _chat(router, "smollm2-135m")  # no retrieval: straight to the model
    assert no_llm.value.status_code == 503
    assert "no LLM backend could answer (smollm2-135m" in no_llm.value.message

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        after = _services(env)
        if all(after[name]["state"] == "up" and after[name]["restarts"] == 1 for name in ("llm", "retriever")):
            break
        time.sleep(2)
    for name, svc in after.items():
        restarted = name in ("llm", "retriever")
        assert (svc["state"], svc["restarts"], svc["pid"] != before[name]["pid"]) == (
            "up",
            int(restarted),
            restarted,
        ), (name, svc)
    assert "killed by SIGKILL" in after["llm"]["last_exit"]
    assert _chat(router, "ragyard/smollm2-135m") == "smollm2-135m"  # through the restarted retriever and LLM
    table = _status(env)
    assert table.returncode == 0 and "restarting" not in table.stdout and "retriever" in table.stdout

    # Everything the services run now, workers included, must be gone after Ctrl-C.
    for svc in after.values():
        service = psutil.Process(svc["pid"])
        processes += [service, *service.children(recursive=True)]
    return after

"""`make run`, as the README documents it: services up, URLs printed, index built, crashed services
restarted, `python -m ragyard status`, Ctrl-C stops all."""

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import psutil
import pytest

from ragyard import collection as col
from pipelines.ledger import Ledger
from ragyard.settings import (
    BrokerSettings,
    CatalogModel,
    DagsterSettings,
    EmbedderSettings,
    LLMSettings,
    MlflowSettings,
    RetrieverSettings,
    RouterSettings,
    SafetySettings,
    SupervisorSettings,
    ToolsSettings,
    settings_env,
)
from tests.conftest import free_port
from tests.corpus import write_corpus

REPO_ROOT = Path(__file__).resolve().parents[1]


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def _wait_for(lines: queue.Queue, pattern: str, seen: list[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matching {pattern!r}; output was:\n{''.join(seen)[-5000:]}")


def _drain(lines: queue.Queue, timeout_s: float = 30) -> str:
    """What is left of the output, once the command has exited."""
    rest = []
    with contextlib.suppress(queue.Empty):
        while (line := lines.get(timeout=timeout_s)) is not None:
            rest.append(line)
    return "".join(rest)


def _group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_readme_names_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ragyard", "status", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


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
    answer = client.chat.completions.create(model=model, max_tokens=8, extra_body={"ragyard": {"cache": False}},
                                            messages=[{"role": "user", "content": "How do decorators work?"}])
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
    settings.llm = LLMSettings(port=free_port(), probe_tokens=4,
                               models=[CatalogModel(name="smollm2-135m", model="smollm2-135m", context_length=2048)])
    settings.safety = SafetySettings(port=free_port())
    settings.tools = ToolsSettings(port=free_port())
    settings.router = RouterSettings(port=free_port())
    settings.broker = BrokerSettings(port=free_port(), management_port=free_port(), prometheus_port=free_port(),
                                     dist_port=free_port(), epmd_port=free_port())
    # A first restart 5-10 s after a crash (and BentoML's start-up on top): time to see the 503s.
    settings.supervisor = SupervisorSettings(restart_backoff_s=10.0)
    env = {**os.environ, **settings_env(settings)}
    # VENV: the environment running these tests (a git worktree has no .venv of its own).
    make = subprocess.Popen(["make", "run", f"VENV={Path(sys.executable).parent.parent}"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(make.stdout, lines), daemon=True).start()
    seen: list[str] = []
    processes: list[psutil.Process] = []
    try:
        ready = _wait_for(lines, r"^READY ", seen, timeout_s=600)
        assert "index ready: " not in "".join(seen)  # the URLs come before the index build
        assert f"dagster={settings.dagster.url}" in ready and f"mlflow={settings.mlflow.url}" in ready
        assert f"router={settings.router.url}" in ready and f"llm={settings.llm.url}" in ready
        assert f"broker=http://127.0.0.1:{settings.broker.management_port}" in ready
        _wait_for(lines, r"index ready: ", seen, timeout_s=900)

        assert httpx.get(f"{settings.dagster.url}/server_info").status_code == 200
        assert httpx.get(f"{settings.mlflow.url}/health").text == "OK"
        ledger = Ledger(settings.ledger_path)
        assert len(ledger.entries()) == 5
        client = col.connect(settings.milvus.uri)
        assert col.row_count(client, settings.milvus.collection) == ledger.chunk_total() > 0
        hits = httpx.post(f"{settings.retriever.url}/search", json={"query": "how do decorators work"},
                          timeout=60).json()["hits"]
        assert hits[0]["doc_id"] == "docs:guide/decorators.rst"

        created = subprocess.run([sys.executable, "-m", "ragyard", "keys", "create", "--name", "crash-test", "--json"],
                                 cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True)
        router = openai.OpenAI(base_url=f"{settings.router.url}/v1", api_key=json.loads(created.stdout)["key"],
                               max_retries=0, timeout=300)
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
            assert (svc["state"], svc["restarts"], svc["pid"] != before[name]["pid"]) == ("up", int(restarted),
                                                                                       restarted), (name, svc)
        assert "killed by SIGKILL" in after["llm"]["last_exit"]
        assert _chat(router, "ragyard/smollm2-135m") == "smollm2-135m"  # through the restarted retriever and LLM
        table = _status(env)
        assert table.returncode == 0 and "restarting" not in table.stdout and "retriever" in table.stdout

        # Everything the services run now, workers included, must be gone after Ctrl-C.
        for svc in after.values():
            service = psutil.Process(svc["pid"])
            processes += [service, *service.children(recursive=True)]
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            make.wait(timeout=120)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
    output = "".join(seen) + _drain(lines)
    # every service once (mlflow, the broker, dagster dev and the bentos) and the two restarts (the
    # broker's epmd and beam.smp are in its process group: gone with it)
    service_pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", output)]
    assert len(service_pids) == len(after) + 2, output[-5000:]
    stopped = [pid for pid in service_pids if _group_gone(pid, timeout_s=30)]
    assert stopped == service_pids, output[-5000:]
    assert [p for p in processes if p.is_running()] == [], output[-5000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{settings.dagster.url}/server_info")
    final = _status(env)
    assert final.returncode == 3 and "no platform is running" in final.stdout

"""`make run`, as the README documents it: services up, index built, URLs printed, Ctrl-C stops all."""

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from ragyard import collection as col
from pipelines.ledger import Ledger
from ragyard.settings import (
    CatalogModel,
    DagsterSettings,
    EmbedderSettings,
    LLMSettings,
    MlflowSettings,
    RetrieverSettings,
    RouterSettings,
    SafetySettings,
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


@pytest.mark.slow
def test_make_run_builds_the_index_prints_urls_and_stops_cleanly(settings, corpus):
    write_corpus(corpus, count=4)
    settings.mlflow = MlflowSettings(url=f"http://127.0.0.1:{free_port()}")
    settings.dagster = DagsterSettings(port=free_port())
    settings.milvus.run_local = False  # the session's milvus-lite server stands in for the local one
    settings.embedder = EmbedderSettings(port=free_port())  # its url follows the port
    settings.retriever = RetrieverSettings(port=free_port())
    settings.llm = LLMSettings(port=free_port(), probe_tokens=4,
                               models=[CatalogModel(name="smollm2-135m", model="smollm2-135m", context_length=2048)])
    settings.safety = SafetySettings(port=free_port())
    settings.router = RouterSettings(port=free_port())
    env = {**os.environ, **settings_env(settings)}
    make = subprocess.Popen(["make", "run"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(make.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        ready = _wait_for(lines, r"^READY ", seen, timeout_s=600)
        output = "".join(seen)
        assert f"dagster={settings.dagster.url}" in ready and f"mlflow={settings.mlflow.url}" in ready
        assert "index ready: " in output
        service_pids = [int(p) for p in re.findall(r"started \w+ \(pid (\d+)\)", output)]
        assert len(service_pids) == 7  # mlflow, dagster dev, the embedder, retriever, llm, safety and router bentos

        assert httpx.get(f"{settings.dagster.url}/server_info").status_code == 200
        assert httpx.get(f"{settings.mlflow.url}/health").text == "OK"
        ledger = Ledger(settings.ledger_path)
        assert len(ledger.entries()) == 5
        client = col.connect(settings.milvus.uri)
        assert col.row_count(client, settings.milvus.collection) == ledger.chunk_total() > 0
        hits = httpx.post(f"{settings.retriever.url}/search", json={"query": "how do decorators work"},
                          timeout=60).json()["hits"]
        assert hits[0]["doc_id"] == "docs:guide/decorators.rst"
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            make.wait(timeout=120)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
    stopped = [pid for pid in service_pids if _group_gone(pid, timeout_s=30)]
    assert stopped == service_pids, "".join(seen)[-5000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{settings.dagster.url}/server_info")

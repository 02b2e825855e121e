"""Shared fixtures: a real milvus-lite server, settings under a temporary RAGYARD_HOME, a corpus."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

# Offline: models come from packages, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bentos.retriever import collection as col  # noqa: E402
from ragyard.settings import ChunkerSettings, IngestSettings, MilvusSettings, Settings, SourceSettings  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_milvus(uri: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    port = int(uri.rsplit(":", 1)[1])
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"milvus-lite exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            col.connect(uri, timeout_s=5).list_collections()
            return
        except Exception:
            time.sleep(0.2)
    raise TimeoutError("milvus-lite did not start")


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory):
    """One milvus-lite server process for the session; each test uses its own collection."""
    port = free_port()
    data_dir = tmp_path_factory.mktemp("milvus")
    log = open(data_dir / "server.log", "wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "milvus-lite"), "server", "--data-dir", str(data_dir / "data"),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_milvus(uri, process)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path, milvus_uri, corpus) -> Settings:
    return Settings(
        home=tmp_path / "home",
        milvus=MilvusSettings(uri=milvus_uri, collection=f"t_{uuid.uuid4().hex[:12]}"),
        ingest=IngestSettings(sources=[SourceSettings(name="docs", path=corpus)], write_batch_rows=16),
        chunker=ChunkerSettings(max_chars=600, overlap_chars=100, min_chars=150),
    )


def run_ingest(settings: Settings):
    """Materialize the ingest job in this process with real resources; returns the result."""
    import dagster as dg

    from pipelines.assets import chunks, documents, embeddings, vector_index
    from pipelines.checks import INDEX_CHECKS
    from pipelines.resources import Embedder, PlatformSettings

    platform = PlatformSettings(settings_json=settings.model_dump_json())
    result = dg.materialize(
        [documents, chunks, embeddings, vector_index, *INDEX_CHECKS],
        resources={"platform": platform, "embedder": Embedder(platform=platform)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def index_metadata(result) -> dict:
    """The vector_index materialization's metadata as plain values."""
    [materialization] = [
        m for m in result.get_asset_materialization_events() if m.asset_key.path == ["vector_index"]
    ]
    return {k: v.value for k, v in materialization.materialization.metadata.items()}


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def settings_env(settings: Settings) -> dict[str, str]:
    """The RAGYARD_* environment variables that reproduce `settings` in another process."""
    import json

    env = {"RAGYARD_HOME": str(settings.home)}
    for group in ("milvus", "embedder", "chunker", "ingest", "mlflow", "dagster"):
        for key, value in getattr(settings, group).model_dump(mode="json").items():
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            env[f"RAGYARD_{group.upper()}__{key.upper()}"] = text
    return env

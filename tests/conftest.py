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
from pipelines.materialize import asset_metadata, materialize_ingest  # noqa: E402
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
    result = materialize_ingest(settings)
    assert result.success
    return result


def index_metadata(result) -> dict:
    return asset_metadata(result, "vector_index")


def settings_env(settings: Settings) -> dict[str, str]:
    """The RAGYARD_* environment variables that reproduce `settings` in another process."""
    import json

    env = {"RAGYARD_HOME": str(settings.home)}
    for group in ("milvus", "embedder", "retriever", "chunker", "ingest", "mlflow", "dagster"):
        for key, value in getattr(settings, group).model_dump(mode="json").items():
            text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            env[f"RAGYARD_{group.upper()}__{key.upper()}"] = text
    return env

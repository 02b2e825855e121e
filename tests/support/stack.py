"""The one way integration tests run services: a `Stack` starts them on ragyard's `Supervisor` (the
supervisor `ragyard run` uses) and stops them, with every process they started, when its `with` block
ends: after a passing test, a failing one, or an interrupt (Ctrl-C, SIGTERM; a second one while
stopping kills at once).

    with Stack(tmp_path / "stack") as stack:
        embedder = stack.bento("bentos.embedder.service:Embedder", env={...})
        llama = stack.llama_server("upstream", model_path, alias="smol")
        ...
        stack.kill("upstream")  # as a crash would

Every service writes its output to ``<root>/logs/<name>.log``; a service that does not become healthy
fails the test with the end of that log.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import TracebackType

from ragyard import collection as col
from ragyard.service_spec import ServiceSpec
from ragyard.services import bentoml_serve_spec, milvus_spec, mlflow_spec
from ragyard.settings import MilvusSettings, MlflowSettings, Settings
from ragyard.supervisor import Supervisor
from tests.support.network import free_port

# milvus-lite accepts TCP connections a moment before it answers: ready once it lists its collections.
_MILVUS_READY_TIMEOUT_S = 60.0


class Stack:
    """Services started for tests and always stopped together."""

    def __init__(self, root: Path, stop_timeout_s: float = 20.0) -> None:
        self.root = root
        self.supervisor = Supervisor(root / "logs", stop_timeout_s)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.supervisor.stop_all()

    # -- starting -------------------------------------------------------------------------------

    def start(self, *specs: ServiceSpec) -> None:
        """Start the services together and wait until each is healthy (ServiceFailed, quoting its log, if
        one is not). Their processes are then remembered, BentoML's workers included (they lead sessions
        of their own), so stopping reaches them even after their service has died."""
        try:
            self.supervisor.start_all(list(specs))
        finally:
            self.supervisor.refresh_trees()

    def bento(
        self,
        target: str,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        home: Path | None = None,
        health_path: str = "/readyz",
        timeout_s: float = 180,
    ) -> str:
        """`bentoml serve TARGET` on a free port, with RAGYARD_HOME (and BENTOML_HOME under it) set to `home`
        (default: <root>/<name>) unless `env` sets them; its URL once healthy. `name` defaults to the
        service class in lower case."""
        self.start(self.bento_spec(target, name=name, env=env, home=home, health_path=health_path, timeout_s=timeout_s))
        return self.url(name or _service_name(target))

    def bento_spec(
        self,
        target: str,
        *,
        name: str | None = None,
        env: dict[str, str] | None = None,
        home: Path | None = None,
        port: int | None = None,
        health_path: str = "/readyz",
        timeout_s: float = 180,
    ) -> ServiceSpec:
        """What `bento` starts, to start several at once with `start`."""
        name = name or _service_name(target)
        home = home or self.root / name
        home.mkdir(parents=True, exist_ok=True)
        env = {"RAGYARD_HOME": str(home), "BENTOML_HOME": str(home / "bentoml"), **(env or {})}
        return bentoml_serve_spec(name, target, port or free_port(), health_path, env, timeout_s)

    def llama_server(self, name: str, model: Path, alias: str, n_ctx: int = 2048) -> str:
        """llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`) for one GGUF model, on
        one thread; its URL (without /v1) once it lists its model."""
        self.start(self.llama_server_spec(name, model, alias, n_ctx))
        return self.url(name)

    def llama_server_spec(self, name: str, model: Path, alias: str, n_ctx: int = 2048) -> ServiceSpec:
        port = free_port()
        return ServiceSpec(
            name=name,
            argv=[
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(model),
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                str(n_ctx),
                "--n_threads",
                "1",
            ],
            health_url=f"http://127.0.0.1:{port}/v1/models",
            ui_url=f"http://127.0.0.1:{port}",
        )

    def milvus(self, name: str = "milvus") -> str:
        """A milvus-lite server with its data under <root>/<name>, as `ragyard run` starts it; its URI."""
        settings = Settings(home=self.root / name, milvus=MilvusSettings(uri=f"http://127.0.0.1:{free_port()}"))
        self.start(milvus_spec(settings))
        deadline = time.monotonic() + _MILVUS_READY_TIMEOUT_S
        while True:
            try:
                col.connect(settings.milvus.uri, timeout_s=5).list_collections()
                return settings.milvus.uri
            except Exception:  # noqa: BLE001 - pymilvus raises several kinds while the server boots
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def mlflow(self, name: str = "mlflow") -> str:
        """An MLflow server (SQLite, local artifacts) under <root>/<name>, as `ragyard run` starts it; its URL."""
        settings = Settings(home=self.root / name, mlflow=MlflowSettings(url=f"http://127.0.0.1:{free_port()}"))
        self.start(mlflow_spec(settings))
        return settings.mlflow.url

    # -- using ----------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        spec = self.supervisor.spec(name)
        assert spec.ui_url is not None, f"{name} has no URL"
        return spec.ui_url

    def log(self, name: str) -> str:
        """What the service has written so far (across its restarts)."""
        return (self.supervisor.logs_dir / f"{name}.log").read_text(errors="replace")

    def pid(self, name: str) -> int:
        return self.supervisor.pids()[name]

    def refresh(self) -> None:
        """Remember the processes the services have started since (a service that starts others later)."""
        self.supervisor.refresh_trees()

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """Stop one service gracefully (SIGTERM, then SIGKILL after the stop timeout)."""
        self.supervisor.stop(name)

    def kill(self, name: str) -> None:
        """SIGKILL one service and all its processes at once, as a crash or a pulled plug would."""
        self.supervisor.kill(name)


def _service_name(target: str) -> str:
    """bentos.llm.service:LLM -> llm"""
    return target.rsplit(":", 1)[1].lower()

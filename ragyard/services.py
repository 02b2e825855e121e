"""The processes that `ragyard run` supervises on one machine, built from the settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ragyard.service_spec import ServiceSpec
from ragyard.settings import Settings, settings_env

REPO_ROOT = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent


def prepare_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME under the data directory, with the repository's dagster.yaml linked in."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(REPO_ROOT / "dagster.yaml")
    return home


def service_env(settings: Settings) -> dict[str, str]:
    """Environment every service gets: the settings themselves, offline model loading."""
    return {
        **settings_env(settings),
        "DAGSTER_HOME": str(settings.dagster_home),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        "TRANSFORMERS_OFFLINE": os.environ.get("TRANSFORMERS_OFFLINE", "1"),
        # MLflow clients otherwise retry for minutes when the server is down.
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    }


def milvus_spec(settings: Settings) -> ServiceSpec:
    settings.milvus_data_dir.mkdir(parents=True, exist_ok=True)
    port = settings.milvus.port
    return ServiceSpec(
        name="milvus",
        argv=[str(_BIN / "milvus-lite"), "server", "--data-dir", str(settings.milvus_data_dir),
              "--host", "127.0.0.1", "--port", str(port)],
        health_tcp=("127.0.0.1", port),
        ui_url=settings.milvus.uri,
    )


def mlflow_spec(settings: Settings) -> ServiceSpec:
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    port = settings.mlflow.port
    return ServiceSpec(
        name="mlflow",
        argv=[str(_BIN / "mlflow"), "server",
              "--backend-store-uri", f"sqlite:///{settings.mlflow_dir / 'mlflow.db'}",
              "--artifacts-destination", str(settings.mlflow_dir / "artifacts"),
              "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        health_url=f"http://127.0.0.1:{port}/health",
        ui_url=f"http://127.0.0.1:{port}",
        # MLflow's job runner starts 8 worker processes that nothing of ours uses.
        env={**service_env(settings), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


def dagster_spec(settings: Settings) -> ServiceSpec:
    prepare_dagster_home(settings)
    return ServiceSpec(
        name="dagster",
        argv=[str(_BIN / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
              "-h", settings.dagster.host, "-p", str(settings.dagster.port)],
        health_url=f"{settings.dagster.url}/server_info",
        ui_url=settings.dagster.url,
        env=service_env(settings),
        cwd=str(REPO_ROOT),
        startup_timeout_s=240.0,
    )


def bento_spec(settings: Settings, name: str, target: str, port: int, health_path: str,
               startup_timeout_s: float = 180.0) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=[str(_BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}{health_path}",
        ui_url=f"http://127.0.0.1:{port}",
        env={**service_env(settings), "BENTOML_HOME": str(settings.home / "bentoml")},
        cwd=str(REPO_ROOT),
        startup_timeout_s=startup_timeout_s,
    )


def embedder_spec(settings: Settings) -> ServiceSpec:
    return bento_spec(settings, "embedder", "bentos.embedder.service:Embedder", settings.embedder.port, "/readyz")


def retriever_spec(settings: Settings) -> ServiceSpec:
    # /healthz, not /readyz: the retriever is ready only once ingestion has created the collection.
    return bento_spec(settings, "retriever", "bentos.retriever.service:Retriever", settings.retriever.port, "/healthz")


def safety_spec(settings: Settings) -> ServiceSpec:
    # /readyz: ready once spaCy, jailguard's ONNX MiniLM and the profanity model are loaded.
    return bento_spec(settings, "safety", "bentos.safety.service:Safety", settings.safety.port, "/readyz")


def llm_spec(settings: Settings) -> ServiceSpec:
    # /readyz turns green once every catalog model is loaded and its throughput measured: on a
    # busy 2-core machine that can take minutes for the three default models.
    return bento_spec(settings, "llm", "bentos.llm.service:LLM", settings.llm.port, "/readyz", startup_timeout_s=600.0)


def router_spec(settings: Settings) -> ServiceSpec:
    # /readyz: the front door; it reaches the other bentos per request (a backend down is a 503 or a fallback).
    return bento_spec(settings, "router", "bentos.router.service:Router", settings.router.port, "/readyz")


def tools_spec(settings: Settings) -> ServiceSpec:
    # /readyz: the built-in tools are made and the key store is open; mounted MCP servers join and
    # leave the registry as they come and go, without making the bento unready.
    return bento_spec(settings, "tools", "bentos.tools.service:Tools", settings.tools.port, "/readyz")


def platform_services(settings: Settings) -> list[ServiceSpec]:
    specs = []
    if settings.milvus.run_local:
        specs.append(milvus_spec(settings))
    if settings.mlflow.run_local:
        specs.append(mlflow_spec(settings))
    specs += [dagster_spec(settings), embedder_spec(settings), retriever_spec(settings), safety_spec(settings),
              llm_spec(settings), router_spec(settings), tools_spec(settings)]
    return specs

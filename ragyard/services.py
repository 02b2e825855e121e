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
        argv=[
            str(_BIN / "milvus-lite"),
            "server",
            "--data-dir",
            str(settings.milvus_data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        health_tcp=("127.0.0.1", port),
        ui_url=settings.milvus.uri,
    )


def mlflow_spec(settings: Settings) -> ServiceSpec:
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    port = settings.mlflow.port
    return ServiceSpec(
        name="mlflow",
        argv=[
            str(_BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{settings.mlflow_dir / 'mlflow.db'}",
            "--artifacts-destination",
            str(settings.mlflow_dir / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        health_url=f"http://127.0.0.1:{port}/health",
        ui_url=f"http://127.0.0.1:{port}",
        # MLflow's job runner starts 8 worker processes that nothing of ours uses.
        env={**service_env(settings), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


# Debian's rabbitmq-server: the real start script (/usr/sbin/rabbitmq-server is a wrapper that switches
# to the rabbitmq user and writes under /var). It runs in the foreground and stops on SIGTERM.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def write_broker_config(settings: Settings) -> Path:
    """The local broker's folder with its configuration, rewritten from the settings on every start."""
    base, broker = settings.broker_dir, settings.broker
    base.mkdir(parents=True, exist_ok=True)
    (base / "rabbitmq-env.conf").write_text("")  # an empty one keeps /etc/rabbitmq/rabbitmq-env.conf out
    (base / "rabbitmq.conf").write_text(
        "\n".join(
            [
                f"listeners.tcp.1 = 127.0.0.1:{broker.port}",
                "management.tcp.ip = 127.0.0.1",
                f"management.tcp.port = {broker.management_port}",
                "prometheus.tcp.ip = 127.0.0.1",
                f"prometheus.tcp.port = {broker.prometheus_port}",
                # Take effect on the first boot of the folder only (see BrokerSettings).
                f"default_user = {broker.user}",
                f"default_pass = {broker.password}",
                # To stdout, which the supervisor writes to logs/broker.log ("off", not "false": an enum).
                "log.console = true",
                "log.console.level = info",
                "log.console.use_colors = off",
                "log.file = false",
                "",
            ]
        )
    )
    return base


def broker_env(settings: Settings) -> dict[str, str]:
    """Everything of the broker under RAGYARD_HOME/rabbitmq, every listener on 127.0.0.1."""
    base, broker = settings.broker_dir, settings.broker
    loopback_only = "-kernel inet_dist_use_interface {127,0,0,1}"  # else the distribution port binds 0.0.0.0
    return {
        "HOME": str(base),  # its .erlang.cookie
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_ENABLED_PLUGINS": "rabbitmq_management,rabbitmq_prometheus",
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(base / "plugins-expand"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "RABBITMQ_NODENAME": "ragyard@localhost",  # constant: the data folder is named after it
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(broker.port),
        "RABBITMQ_DIST_PORT": str(broker.dist_port),
        "ERL_EPMD_PORT": str(broker.epmd_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopback_only,
        "RABBITMQ_CTL_ERL_ARGS": loopback_only,
    }


def broker_spec(settings: Settings) -> ServiceSpec:
    write_broker_config(settings)
    epmd = settings.broker.epmd_port
    # epmd in the foreground, in the service's process group: the `epmd -daemon` that erl starts by
    # itself calls setsid and would outlive the broker. The broker starts once epmd answers.
    script = (
        f"epmd -port {epmd} -address 127.0.0.1 & "
        f"until epmd -port {epmd} -names >/dev/null 2>&1; do sleep 0.05; done; "
        f"exec {RABBITMQ_SERVER}"
    )
    return ServiceSpec(
        name="broker",
        argv=["sh", "-c", script],
        # The AMQP listener is the last to start: once it accepts, the broker is ready.
        health_tcp=("127.0.0.1", settings.broker.port),
        ui_url=f"http://127.0.0.1:{settings.broker.management_port}",
        env=broker_env(settings),
        cwd=str(settings.broker_dir),
        startup_timeout_s=120.0,
    )


def dagster_spec(settings: Settings) -> ServiceSpec:
    prepare_dagster_home(settings)
    return ServiceSpec(
        name="dagster",
        argv=[
            str(_BIN / "dagster"),
            "dev",
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "-h",
            settings.dagster.host,
            "-p",
            str(settings.dagster.port),
        ],
        health_url=f"{settings.dagster.url}/server_info",
        ui_url=settings.dagster.url,
        env=service_env(settings),
        cwd=str(REPO_ROOT),
        startup_timeout_s=240.0,
    )


def bentoml_serve_spec(
    name: str, target: str, port: int, health_path: str, env: dict[str, str], startup_timeout_s: float = 180.0
) -> ServiceSpec:
    """`bentoml serve TARGET` on 127.0.0.1:PORT, healthy once HEALTH_PATH answers; `env` over the environment."""
    return ServiceSpec(
        name=name,
        argv=[str(_BIN / "bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}{health_path}",
        ui_url=f"http://127.0.0.1:{port}",
        env=env,
        cwd=str(REPO_ROOT),
        startup_timeout_s=startup_timeout_s,
    )


def bento_spec(
    settings: Settings, name: str, target: str, port: int, health_path: str, startup_timeout_s: float = 180.0
) -> ServiceSpec:
    """A bento of the platform: the settings as its environment, its BentoML home under the data directory."""
    env = {**service_env(settings), "BENTOML_HOME": str(settings.home / "bentoml")}
    return bentoml_serve_spec(name, target, port, health_path, env, startup_timeout_s)


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


def memory_spec(settings: Settings) -> ServiceSpec:
    # /readyz: ready once its Milvus collection is open; the embedder, safety and LLM bentos it calls
    # are reached per request (an add answers 503 while one is down, an extraction waits for it).
    return bento_spec(settings, "memory", "bentos.memory.service:Memory", settings.memory.port, "/readyz")


def review_spec(settings: Settings) -> ServiceSpec:
    # /readyz: the queue's and the router's state are open; the broker is reached in the background.
    return bento_spec(settings, "review", "bentos.review.service:Review", settings.review.port, "/readyz")


def platform_services(settings: Settings) -> list[ServiceSpec]:
    specs = []
    if settings.milvus.run_local:
        specs.append(milvus_spec(settings))
    if settings.mlflow.run_local:
        specs.append(mlflow_spec(settings))
    if settings.broker.run_local:
        specs.append(broker_spec(settings))
    specs += [
        dagster_spec(settings),
        embedder_spec(settings),
        retriever_spec(settings),
        safety_spec(settings),
        llm_spec(settings),
        router_spec(settings),
        tools_spec(settings),
        memory_spec(settings),
        review_spec(settings),
    ]
    return specs

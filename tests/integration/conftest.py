"""The services integration tests share, started once per session when a test first asks for one:
a milvus-lite server, an MLflow server, a PostgreSQL server; and settings under a temporary
RAGYARD_HOME on a collection of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragyard.settings import (
    Settings,
)
from tests.support.broker import LocalBroker, running_broker
from tests.support.ingest import corpus_settings
from tests.support.stack import Stack


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's shared services, stopped at the end of the session."""
    with Stack(tmp_path_factory.mktemp("shared")) as stack:
        yield stack


@pytest.fixture(scope="session")
def milvus_uri(shared_stack: Stack) -> str:
    """One milvus-lite server for the session; each test uses its own collection."""
    return shared_stack.milvus()


@pytest.fixture(scope="session")
def mlflow_server(shared_stack: Stack) -> str:
    """One MLflow server (SQLite, local artifacts) for the session, started as `make run` does; its URL.
    Tests share it: use your own experiment and prompt names."""
    return shared_stack.mlflow()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real PostgreSQL 16 server (pgserver, on a unix socket) for the session; its URL. Tests
    make their own databases on it with `tests.support.databases.new_database`."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M's GGUF, from its PyPI package (`make llm-models-test`, which `make test` runs); fails
    without it."""
    from bentos.llm.models import ModelNotInstalled, resolve_gguf

    try:
        return resolve_gguf("smollm2-135m", Settings().llm_models_dir)
    except ModelNotInstalled as exc:
        pytest.fail(f"SmolLM2 is not installed ({exc}); run `make llm-models-test`")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(tmp_path: Path, milvus_uri: str, corpus: Path) -> Settings:
    return corpus_settings(tmp_path / "home", milvus_uri, corpus)


@pytest.fixture(scope="session")
def event_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One real RabbitMQ for the session, started as `make run` does (tests.support.broker); tests that stop
    it have their own. Use your own Topology prefix, or expect others' events on the queues."""
    with running_broker(tmp_path_factory.mktemp("broker-home")) as broker:
        yield broker

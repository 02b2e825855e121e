"""`ragyard run` when a service cannot start: the others keep running, the failure is said
loudly, READY lists what is up; and a second run on a data directory in use is refused."""

import os
import signal
import sys

import pytest

import ragyard.cli.platform
from ragyard.cli import main
from ragyard.service_spec import ServiceSpec
from ragyard.status import (
    PlatformStatus,
    ServiceState,
    now,
    read_status,
    this_process_started_at,
    write_status,
)
from tests.support.network import free_port
from tests.support.toy_services import TCP_LISTENER


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGYARD_HOME", str(tmp_path))
    monkeypatch.setenv("RAGYARD_SUPERVISOR__MAX_CRASHES", "1")  # the first crash is the last
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield tmp_path
    for sig, handler in handlers.items():  # `run` installs its own
        signal.signal(sig, handler)


def test_a_service_that_cannot_start_is_reported_and_the_others_are_ready(home, monkeypatch, capsys):
    port = free_port()
    web = ServiceSpec(
        "web",
        [sys.executable, "-c", TCP_LISTENER, str(port)],
        health_tcp=("127.0.0.1", port),
        ui_url=f"http://127.0.0.1:{port}",
    )
    # Named mlflow: a failed MLflow also means the prompt registry is not seeded.
    broken = ServiceSpec(
        "mlflow",
        [sys.executable, "-c", "import sys; sys.exit('bad setting')"],
        health_tcp=("127.0.0.1", free_port()),
        ui_url="http://127.0.0.1:1",
    )
    monkeypatch.setattr(ragyard.cli.platform, "platform_services", lambda settings: [web, broken])

    assert main(["run", "--skip-index", "--exit-after-start"]) == 1
    out = capsys.readouterr().out
    assert "FAILED mlflow: exited with code 1" in out
    assert f"READY web=http://127.0.0.1:{port}\n" in out  # the failed one is not listed
    assert "prompt ragyard-rag" not in out and "could not seed" not in out
    final = {s.name: s.state for s in read_status(home / "run" / "status.json").services}
    assert final == {"web": ServiceState.STOPPED, "mlflow": ServiceState.FAILED}


def test_a_second_run_on_a_data_directory_in_use_is_refused(home, capsys):
    write_status(
        home / "run" / "status.json",
        PlatformStatus(
            supervisor_pid=os.getpid(), supervisor_started_at=this_process_started_at(), updated_at=now(), services=[]
        ),
    )
    assert main(["run"]) == 1
    assert "a platform is already running with the data directory" in capsys.readouterr().out

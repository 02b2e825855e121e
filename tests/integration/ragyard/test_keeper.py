"""ragyard.keeper with real processes: a crash is restarted after a backoff and counts as up only once
healthy again, a crash loop is given up on while the others keep serving, a service that cannot start
fails with its reason, the status file and `python -m ragyard status`, and no orphan process at the end."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import psutil

from ragyard.keeper import ServiceKeeper
from ragyard.settings import SupervisorSettings
from ragyard.status import ServiceState, read_status
from ragyard.supervisor import ServiceSpec
from tests.support.cli import ragyard
from tests.support.network import free_port
from tests.support.paths import REPO_ROOT
from tests.support.toy_services import TCP_LISTENER, assert_gone, tcp_service

# Listens on argv[1]; started again (a restart), it waits for the file argv[2]/go before listening,
# so that the test sees it running but not yet healthy.
GATED_ON_RESTART = textwrap.dedent(
    """
    import os, socket, sys, time
    starts = os.path.join(sys.argv[2], "starts")
    count = int(open(starts).read()) + 1 if os.path.exists(starts) else 1
    open(starts, "w").write(str(count))
    while count > 1 and not os.path.exists(os.path.join(sys.argv[2], "go")):
        time.sleep(0.05)
    s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    time.sleep(300)
    """
)

# Like BentoML's process manager: starts a worker in a session of its own (out of reach of the
# service's process group), writes the worker's pid to argv[2], then listens on argv[1].
WORKER_IN_OWN_SESSION = textwrap.dedent(
    """
    import os, socket, subprocess, sys, time
    worker = subprocess.Popen(["sleep", "300"], start_new_session=True)
    open(sys.argv[2] + ".tmp", "w").write(str(worker.pid))
    os.replace(sys.argv[2] + ".tmp", sys.argv[2])
    s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    time.sleep(300)
    """
)


def fast_settings(**overrides) -> SupervisorSettings:
    return SupervisorSettings(
        **{"restart_backoff_s": 0.2, "max_crashes": 3, "crash_window_s": 600, "stop_timeout_s": 5, **overrides}
    )


def states(keeper: ServiceKeeper) -> dict:
    return {s.name: s for s in keeper.status()}


def wait_for(condition, what: str, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_crashed_service_is_restarted_and_is_up_only_once_healthy_again(tmp_path, caplog):
    caplog.set_level("INFO", logger="ragyard.supervisor")
    port = free_port()
    victim = ServiceSpec(
        "victim",
        [sys.executable, "-c", GATED_ON_RESTART, str(port), str(tmp_path)],
        health_tcp=("127.0.0.1", port),
        ui_url=f"http://127.0.0.1:{port}",
    )
    status_file = tmp_path / "run" / "status.json"
    with ServiceKeeper([victim, tcp_service("bystander")], tmp_path / "logs", fast_settings(), status_file) as keeper:
        started = {s.name: s for s in keeper.start_all()}
        assert started["victim"].state is ServiceState.UP and started["bystander"].state is ServiceState.UP
        first_pid, bystander_pid = started["victim"].pid, started["bystander"].pid

        os.kill(first_pid, signal.SIGKILL)
        # Restarted, running, but not healthy: it must not count as up.
        restarted = wait_for(lambda: (s := states(keeper)["victim"]).pid not in (None, first_pid) and s, "a restart")
        assert restarted.state is ServiceState.RESTARTING
        assert restarted.restarts == 1
        assert "killed by SIGKILL" in restarted.last_exit
        assert read_status(status_file).services[0].state is ServiceState.RESTARTING
        assert "restarting victim in" in caplog.text
        assert_gone(first_pid)

        (tmp_path / "go").touch()
        up = wait_for(lambda: (s := states(keeper)["victim"]).state is ServiceState.UP and s, "healthy again")
        assert up.pid == restarted.pid and up.restarts == 1
        assert "victim is healthy again" in caplog.text
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # The other service was left alone.
        bystander = states(keeper)["bystander"]
        assert bystander.state is ServiceState.UP and bystander.pid == bystander_pid and bystander.restarts == 0
    assert_gone(up.pid)
    assert {s.state for s in read_status(status_file).services} == {ServiceState.STOPPED}


def test_a_crash_loop_is_given_up_while_the_others_keep_serving(tmp_path, caplog):
    caplog.set_level("INFO", logger="ragyard.supervisor")
    crasher = "import sys; print('MARKER-crash-loop-5e1d', file=sys.stderr); sys.exit(3)"
    looper = ServiceSpec("looper", [sys.executable, "-c", crasher], health_tcp=("127.0.0.1", free_port()))
    status_file = tmp_path / "status.json"
    with ServiceKeeper(
        [looper, tcp_service("steady")], tmp_path / "logs", fast_settings(max_crashes=3), status_file
    ) as keeper:
        started = {s.name: s for s in keeper.start_all()}
        # Reported once it has crashed, not after its last retry: the others' URLs are not held back.
        assert started["looper"].state in (ServiceState.RESTARTING, ServiceState.FAILED)
        assert started["looper"].last_exit == "exited with code 3"
        looper = wait_for(lambda: (s := states(keeper)["looper"]).state is ServiceState.FAILED and s, "giving up")
        assert looper.restarts == 2 and looper.pid is None and looper.last_exit == "exited with code 3"
        assert "GIVING UP on looper after 3 crashes" in caplog.text
        # Each crash quotes the end of the service's log of that run.
        assert caplog.text.count("looper.log ---\nMARKER-crash-loop-5e1d\n") == 3
        steady = states(keeper)["steady"]
        assert steady.state is ServiceState.UP and steady.pid == started["steady"].pid and running(steady.pid)

        written = read_status(status_file)
        assert written.supervisor_pid == os.getpid() and written.supervisor_alive()
        assert [(s.name, s.state, s.restarts) for s in written.services] == [
            ("looper", ServiceState.FAILED, 2),
            ("steady", ServiceState.UP, 0),
        ]
        assert written.services[1].pid == steady.pid
    assert_gone(steady.pid)
    assert [s.state for s in read_status(status_file).services] == [ServiceState.FAILED, ServiceState.STOPPED]


def test_services_that_cannot_start_are_retried_then_failed_with_their_reason(tmp_path, caplog):
    caplog.set_level("INFO", logger="ragyard.supervisor")
    taken = socket.create_server(("127.0.0.1", 0))  # another process's server, as far as ragyard can tell
    taken_port = taken.getsockname()[1]
    squatted = ServiceSpec(
        "squatted", [sys.executable, "-c", TCP_LISTENER, str(taken_port)], health_tcp=("127.0.0.1", taken_port)
    )
    silent = ServiceSpec(
        "silent",
        [sys.executable, "-c", "import time; time.sleep(300)"],
        health_tcp=("127.0.0.1", free_port()),
        startup_timeout_s=0.5,
    )
    try:
        with ServiceKeeper([squatted, silent], tmp_path / "logs", fast_settings(max_crashes=2)) as keeper:
            keeper.start_all()
            final = {s.name: s for s in keeper.wait_forever()}  # returns once every service has failed
    finally:
        taken.close()
    assert final["squatted"].state is ServiceState.FAILED
    assert final["squatted"].last_exit == (
        f"service 'squatted' not started: 127.0.0.1:{taken_port} is already in use by another process"
    )
    assert final["squatted"].restarts == 0  # never spawned
    assert "started squatted" not in caplog.text
    assert final["silent"].state is ServiceState.FAILED
    assert final["silent"].last_exit == "not healthy within 0.5 s"
    assert final["silent"].restarts == 1
    silent_pids = [int(p) for p in re.findall(r"started silent \(pid (\d+)\)", caplog.text)]
    assert len(silent_pids) == 2
    for pid in silent_pids:
        assert_gone(pid)


def test_workers_in_their_own_session_are_cleared_before_a_restart_and_at_stop(tmp_path):
    port = free_port()
    pid_file = tmp_path / "worker.pid"
    spec = ServiceSpec(
        "tree", [sys.executable, "-c", WORKER_IN_OWN_SESSION, str(port), str(pid_file)], health_tcp=("127.0.0.1", port)
    )
    with ServiceKeeper([spec], tmp_path / "logs", fast_settings()) as keeper:
        leader = keeper.start_all()[0].pid
        worker = int(pid_file.read_text())
        assert os.getsid(worker) == worker != os.getsid(leader)  # out of reach of the leader's group
        pid_file.unlink()
        os.kill(leader, signal.SIGKILL)  # the worker would live on as an orphan
        up_again = wait_for(
            lambda: (s := keeper.status()[0]).state is ServiceState.UP and s.restarts == 1 and s, "the restart"
        )
        assert not running(worker)
        second_worker = int(pid_file.read_text())
        assert running(second_worker)
    assert_gone(up_again.pid)
    assert not running(second_worker)


def test_sigterm_stops_the_platform_and_status_tells_what_runs(tmp_path):
    """End to end, as `ragyard run` does it: install_signal_handlers + ServiceKeeper with a status
    file in a process that gets `kill`ed; `python -m ragyard status` before, during and after."""
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAGYARD_HOME": str(home)}

    def status(*args: str) -> subprocess.CompletedProcess:
        return ragyard("status", *args, env=env, timeout_s=120)

    never = status()
    assert never.returncode == 3 and "no platform is running: none has run" in never.stdout

    port = free_port()
    script = textwrap.dedent(
        """
        import logging, sys
        from pathlib import Path
        from ragyard.keeper import ServiceKeeper
        from ragyard.settings import Settings
        from ragyard.status import status_path
        from ragyard.supervisor import ServiceSpec, install_signal_handlers
        logging.basicConfig(level=logging.INFO)
        install_signal_handlers()
        settings = Settings()
        port = int(sys.argv[1])
        svc = ServiceSpec("svc", [sys.executable, "-c", sys.argv[2], str(port)], health_tcp=("127.0.0.1", port),
                          ui_url=f"http://127.0.0.1:{port}")
        with ServiceKeeper([svc], settings.logs_dir, settings.supervisor, status_path(settings)) as keeper:
            keeper.start_all()
            print("SETTLED", flush=True)
            keeper.wait_forever()
        """
    )
    with open(tmp_path / "supervisor.log", "wb") as out:
        supervising = subprocess.Popen(
            [sys.executable, "-c", script, str(port), TCP_LISTENER],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    service_pid = None
    try:
        wait_for(
            lambda: "SETTLED" in (tmp_path / "supervisor.log").read_text() or supervising.poll() is not None,
            "the supervisor to start its service",
        )
        assert supervising.poll() is None, (tmp_path / "supervisor.log").read_text()
        shown = status("--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        current = json.loads(shown.stdout)
        assert current["running"] is True and current["supervisor_pid"] == supervising.pid
        [svc] = current["services"]
        assert (svc["name"], svc["state"], svc["restarts"], svc["url"]) == ("svc", "up", 0, f"http://127.0.0.1:{port}")
        service_pid = svc["pid"]
        assert running(service_pid)
        table = status()
        assert table.returncode == 0 and "svc" in table.stdout and "up" in table.stdout

        supervising.send_signal(signal.SIGTERM)
        supervising.wait(timeout=60)
        assert "stopping svc" in (tmp_path / "supervisor.log").read_text()
        assert_gone(service_pid)
        after = status()
        assert after.returncode == 3
        assert f"no platform is running with the data directory {home}" in after.stdout
        assert f"(pid {supervising.pid}) has ended" in after.stdout
    finally:
        # Only does something if the test failed: leave no process behind either way.
        for pgid in (supervising.pid, service_pid):
            if pgid is not None:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        supervising.wait()


def test_status_of_an_unreadable_status_file_is_a_clear_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_text('{"supervisor_pid": "not a pid"')
    shown = ragyard("status", env={**os.environ, "RAGYARD_HOME": str(tmp_path)}, timeout_s=120)
    assert shown.returncode == 1
    assert "status.json is not a status file of ragyard" in shown.stderr

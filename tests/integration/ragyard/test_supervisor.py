"""ragyard.supervisor with real processes: start, health, failure reports, and stop without orphans."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ragyard.supervisor import ServiceFailed, ServiceSpec, Supervisor
from tests.support.network import free_port
from tests.support.toy_services import TCP_LISTENER, assert_gone, tcp_service

# A service that ignores SIGTERM, spawns a grandchild (which inherits the ignored SIGTERM),
# writes the grandchild's pid to argv[2], then listens on argv[1].
STUBBORN_WITH_GRANDCHILD = textwrap.dedent(
    """
    import signal, socket, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen(["sleep", "300"])
    with open(sys.argv[2], "w") as f:
        f.write(str(grandchild.pid))
    s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    time.sleep(300)
    """
)


def test_start_two_services_then_stop_all(tmp_path):
    http_port = free_port()
    web = ServiceSpec(
        "web",
        [sys.executable, "-m", "http.server", str(http_port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        health_url=f"http://127.0.0.1:{http_port}/",
        ui_url=f"http://127.0.0.1:{http_port}/",
    )
    tcp = tcp_service("tcp")
    with Supervisor(tmp_path / "logs") as sup:
        sup.start_all([web, tcp])
        pids = sup.pids()
        assert set(pids) == {"web", "tcp"}
        for pid in pids.values():
            # Each service leads its own session and process group.
            assert os.getsid(pid) == pid
            assert os.getpgid(pid) == pid
        assert sup.exit_reason("web") is None and sup.exit_reason("tcp") is None
        sup.stop_all()
        assert sup.pids() == {}
        for pid in pids.values():
            assert_gone(pid)
        sup.stop_all()  # idempotent
    assert (tmp_path / "logs" / "web.log").exists()
    assert (tmp_path / "logs" / "tcp.log").exists()


def test_stop_kills_whole_group_when_sigterm_is_ignored(tmp_path, caplog):
    port = free_port()
    pid_file = tmp_path / "grandchild.pid"
    spec = ServiceSpec(
        "stubborn",
        [sys.executable, "-c", STUBBORN_WITH_GRANDCHILD, str(port), str(pid_file)],
        health_tcp=("127.0.0.1", port),
        startup_timeout_s=30,
    )
    with Supervisor(tmp_path / "logs", stop_timeout_s=1.0) as sup:
        sup.start_all([spec])
        pid = sup.pids()["stubborn"]
        grandchild = int(pid_file.read_text())
        assert os.getpgid(grandchild) == pid
        with caplog.at_level("WARNING", logger="ragyard.supervisor"):
            started = time.monotonic()
            sup.stop_all()
        assert time.monotonic() - started >= 1.0  # waited for the SIGTERM grace period
        assert "SIGKILL" in caplog.text
        assert_gone(pid)
        with pytest.raises(ProcessLookupError):
            os.kill(grandchild, 0)


def test_child_gets_default_sigint_and_sigterm(tmp_path):
    port = free_port()
    report = tmp_path / "signals.txt"
    reporter = textwrap.dedent(
        """
        import signal, socket, sys, time
        with open(sys.argv[2], "w") as f:
            f.write(repr(signal.getsignal(signal.SIGTERM)) + "\\n" + repr(signal.getsignal(signal.SIGINT)))
        s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
        time.sleep(300)
        """
    )
    spec = ServiceSpec(
        "reporter", [sys.executable, "-c", reporter, str(port), str(report)], health_tcp=("127.0.0.1", port)
    )
    with Supervisor(tmp_path / "logs") as sup:
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            # Premise: a plain child of this process inherits the ignored SIGTERM.
            plain = subprocess.run(
                [sys.executable, "-c", "import signal; print(repr(signal.getsignal(signal.SIGTERM)))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            sup.start(spec)
        finally:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
        assert "SIG_IGN" in plain.stdout
        sup.wait_healthy("reporter")
        term, int_ = report.read_text().splitlines()
        assert "SIG_DFL" in term
        # Python installs its KeyboardInterrupt handler for SIGINT only if SIGINT was not ignored.
        assert "default_int_handler" in int_


def test_service_exiting_at_once_is_reported_with_code_and_log(tmp_path):
    code = "import sys; print('MARKER-crash-7f3a', file=sys.stderr); sys.exit(3)"
    spec = ServiceSpec(
        "crasher", [sys.executable, "-c", code], health_tcp=("127.0.0.1", free_port()), startup_timeout_s=30
    )
    with Supervisor(tmp_path / "logs") as sup:
        sup.start(spec)
        with pytest.raises(ServiceFailed) as failed:
            sup.wait_healthy("crasher")
    message = str(failed.value)
    assert "'crasher'" in message
    assert "exited with code 3" in message
    assert "MARKER-crash-7f3a" in message


def test_service_never_healthy_times_out(tmp_path):
    spec = ServiceSpec(
        "silent",
        [sys.executable, "-c", "import time; time.sleep(300)"],
        health_tcp=("127.0.0.1", free_port()),
        startup_timeout_s=1.5,
    )
    with Supervisor(tmp_path / "logs") as sup:
        sup.start(spec)
        started = time.monotonic()
        with pytest.raises(ServiceFailed) as failed:
            sup.wait_healthy("silent")
        assert 1.5 <= time.monotonic() - started < 10
        pid = sup.pids()["silent"]
    assert "'silent'" in str(failed.value)
    assert "timed out" in str(failed.value)
    assert "1.5 s" in str(failed.value)
    assert_gone(pid)  # the context manager stopped it


def test_exit_reason_after_external_kill(tmp_path):
    with Supervisor(tmp_path / "logs") as sup:
        sup.start_all([tcp_service("victim")])
        assert sup.exit_reason("victim") is None
        os.kill(sup.pids()["victim"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while sup.exit_reason("victim") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sup.exit_reason("victim") == "exited with code -9 (killed by SIGKILL)"
        failure = str(sup.failure("victim", sup.exit_reason("victim")))
        assert "'victim'" in failure and "SIGKILL" in failure and "(no output)" in failure


def test_stop_reaches_descendants_in_sessions_of_their_own(tmp_path):
    """BentoML's process manager starts its workers with setsid: a signal to the service's group
    misses them, yet stopping the service must not leave them behind."""
    port = free_port()
    pid_file = tmp_path / "worker.pid"
    spawner = textwrap.dedent(
        """
        import socket, subprocess, sys, time
        worker = subprocess.Popen(["sleep", "300"], start_new_session=True)
        open(sys.argv[2], "w").write(str(worker.pid))
        s = socket.create_server(("127.0.0.1", int(sys.argv[1])))
        time.sleep(300)
        """
    )
    spec = ServiceSpec(
        "spawner", [sys.executable, "-c", spawner, str(port), str(pid_file)], health_tcp=("127.0.0.1", port)
    )
    with Supervisor(tmp_path / "logs") as sup:
        sup.start_all([spec])
        pid = sup.pids()["spawner"]
        worker = int(pid_file.read_text())
        assert os.getpgid(worker) == worker != pid
        sup.stop_all()
    assert_gone(pid)
    assert_gone(worker)


def test_a_port_taken_by_another_process_is_refused_before_starting(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with Supervisor(tmp_path / "logs") as sup:
            with pytest.raises(ServiceFailed, match=f"127.0.0.1:{port} is already in use by another process"):
                sup.start(
                    ServiceSpec(
                        "late",
                        [sys.executable, "-c", TCP_LISTENER, str(port)],
                        health_url=f"http://127.0.0.1:{port}/health",
                    )
                )
            assert sup.pids() == {}


def test_second_interrupt_while_stopping_kills_at_once(tmp_path):
    port = free_port()
    spec = ServiceSpec(
        "stubborn",
        [sys.executable, "-c", STUBBORN_WITH_GRANDCHILD, str(port), str(tmp_path / "grandchild.pid")],
        health_tcp=("127.0.0.1", port),
        startup_timeout_s=30,
    )

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    with Supervisor(tmp_path / "logs", stop_timeout_s=60) as sup:
        sup.start_all([spec])
        pid = sup.pids()["stubborn"]
        old_alarm = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                sup.stop_all()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_alarm)
        assert time.monotonic() - started < 15  # not the 60 s grace period
        assert sup.pids() == {}
        assert_gone(pid)

"""What every test gets: offline model loading, a mark per tier (unit, integration, infra, from the
folder), interrupts that unwind the fixtures, and a session that fails if it leaves a process behind.

Tiers: tests/unit run in this process only (no other process, no server); tests/integration start
real processes on loopback, always through `tests.support.stack.Stack`; tests/infra check the
deployment files, images, locks and layers. Select one with `-m unit` (or integration, infra).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ragyard.supervisor import install_signal_handlers
from tests.support import processes
from tests.support.paths import REPO_ROOT

# Offline: models come from packages, never from a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# MLflow clients otherwise retry for minutes against a server that is gone.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
# The embedding backend's export (content-hashed, checked on load) is built once for every test and
# process of the session, and kept for the next session, not once per temporary RAGYARD_HOME.
os.environ.setdefault("RAGYARD_EMBEDDER__MODELS_DIR", str(Path(tempfile.gettempdir()) / "ragyard-test-models"))

TIERS = {
    "unit": "runs in the pytest process only: no other process, no server (tests/unit)",
    "integration": "starts real processes on loopback (tests/integration)",
    "infra": "checks deployment files, images, locks and layers (tests/infra)",
}

_reaper = pytest.StashKey[subprocess.Popen[bytes]]()


def pytest_configure(config: pytest.Config) -> None:
    for tier, what in TIERS.items():
        config.addinivalue_line("markers", f"{tier}: {what}")
    # Mark the session before anything starts: every process started from here on inherits it.
    os.environ[processes.MARK] = processes.new_session_id()
    # SIGTERM (and SIGHUP) unwind like Ctrl-C, so fixtures stop their services; and Ctrl-C works even
    # when this run was started where SIGINT is ignored (a background job of a script).
    install_signal_handlers()
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.stash[_reaper] = _start_reaper(config)


def _start_reaper(config: pytest.Config) -> subprocess.Popen[bytes]:
    capture = config.pluginmanager.getplugin("capturemanager")
    # What it reports goes to the real stderr, never into pytest's capture.
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        env = {k: v for k, v in os.environ.items() if k != processes.MARK}  # not one of the session's own
        return subprocess.Popen(
            [sys.executable, "-m", "tests.support.reaper", str(os.getpid()), os.environ[processes.MARK]],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = REPO_ROOT / "tests"
    for item in items:
        parts = Path(item.path).relative_to(tests).parts
        if parts[0] in TIERS:
            item.add_marker(parts[0])


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears the session's fixtures down
def pytest_sessionfinish(session: pytest.Session) -> None:
    reaper = session.config.stash[_reaper]
    left = processes.session_processes(os.environ[processes.MARK], root_pid=os.getpid(), exclude={reaper.pid})
    if left:
        reporter = session.config.pluginmanager.getplugin("terminalreporter")
        lines = [processes.describe(p) for p in left]
        processes.end(left)
        if reporter is not None:
            reporter.write_sep("=", f"{len(left)} processes started by the tests were left running", red=True)
            for line in lines:
                reporter.write_line(f"  {line}")
            reporter.write_line("(ended now; a test or fixture must stop what it starts: tests.support.stack.Stack)")
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    reaper = config.stash.get(_reaper, None)
    if reaper is not None:  # the session ended here: nothing left for it to do
        reaper.terminate()
        reaper.wait()

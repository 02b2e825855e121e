"""Which processes a test session started and left behind, and how to end them.

A session marks itself: it sets RAGYARD_TEST_SESSION=<id> in its environment before any test runs,
and every process it starts inherits the mark, however far it strays from the pytest process's tree:
BentoML's workers lead sessions of their own, `pg_ctl` daemonizes PostgreSQL, and the services of a
supervisor that was SIGKILLed are reparented to init. A process the session started with an
environment of its own making (no mark) is still found while it hangs below the pytest process.

`tests/conftest.py` checks at the end of the session that none is left (and fails the run if one
is); `tests/support/reaper.py` ends them if pytest itself dies without getting that far.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import uuid

import psutil

MARK = "RAGYARD_TEST_SESSION"
# How long a process gets to end after SIGTERM before SIGKILL.
_TERM_GRACE_S = 10.0


def new_session_id() -> str:
    return uuid.uuid4().hex


def session_processes(
    session_id: str, root_pid: int | None = None, exclude: set[int] | frozenset[int] = frozenset()
) -> list[psutil.Process]:
    """Live processes marked with `session_id`, and those below `root_pid` (when it still runs), except
    `root_pid` itself, the processes in `exclude`, and zombies (dead already, only not reaped)."""
    found: dict[int, psutil.Process] = {}
    if root_pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.update((p.pid, p) for p in psutil.Process(root_pid).children(recursive=True))
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):  # gone, a zombie, or not ours to read
            if process.environ().get(MARK) == session_id:
                found[process.pid] = process
    return [p for pid, p in sorted(found.items()) if pid != root_pid and pid not in exclude and alive(p)]


def describe(process: psutil.Process) -> str:
    """pid, session, and command line of a process, for a report."""
    with contextlib.suppress(psutil.Error):
        return f"pid {process.pid} (session {os.getsid(process.pid)}): {shlex.join(process.cmdline())[:300]}"
    return f"pid {process.pid} (gone)"


def end(processes: list[psutil.Process]) -> None:
    """SIGTERM the processes, then SIGKILL whichever is still there after a grace period."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=_TERM_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=_TERM_GRACE_S)


def alive(process: psutil.Process) -> bool:
    """Running, and not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

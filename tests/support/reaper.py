"""The last line of defence against a leaked process: ends a test session's processes once its pytest
process has died, however it died (SIGKILL, a timeout plugin's os._exit, an out-of-memory kill).

`tests/conftest.py` starts it at the beginning of a session, in a session of its own (so the Ctrl-C
that interrupts pytest does not stop it), and stops it when the session ends normally, after its own
check has run. Usage: python -m tests.support.reaper PYTEST_PID SESSION_ID
"""

from __future__ import annotations

import sys
import time

import psutil

from tests.support.processes import alive, describe, end, session_processes

_POLL_S = 0.5


def watch(pytest_pid: int, session_id: str) -> None:
    try:
        pytest_process = psutil.Process(pytest_pid)
        while alive(pytest_process):
            time.sleep(_POLL_S)
    except psutil.NoSuchProcess:
        pass
    left = session_processes(session_id)
    for process in left:
        print(f"reaper: ending {describe(process)}", file=sys.stderr, flush=True)
    end(left)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])

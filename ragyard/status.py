"""The platform's status file: what ``ragyard run`` is running, for ``python -m ragyard status``.

The supervisor rewrites ``RAGYARD_HOME/run/status.json`` whenever a service changes state,
atomically (a temporary file renamed over it), so a reader never sees half a file. A reader trusts
it only while the process that wrote it is alive: the file holds the writer's pid and start time,
so a pid recycled by another process is not mistaken for a running platform.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import tempfile
from pathlib import Path

import psutil
from pydantic import BaseModel

from ragyard.settings import Settings


class ServiceState(enum.StrEnum):
    STARTING = "starting"  # started for the first time, not yet healthy
    UP = "up"  # healthy
    RESTARTING = "restarting"  # crashed: waiting out its backoff, or restarted and not yet healthy again
    FAILED = "failed"  # crashed too often in a short window: given up
    STOPPED = "stopped"  # stopped with the platform


class ServiceStatus(BaseModel):
    name: str
    state: ServiceState
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None  # why it last crashed: exit code or signal, or "not healthy within N s"
    url: str | None = None
    since: dt.datetime  # when it entered its state


class PlatformStatus(BaseModel):
    supervisor_pid: int
    supervisor_started_at: float  # the supervising process's start time, as psutil reports it
    updated_at: dt.datetime
    services: list[ServiceStatus]

    def supervisor_alive(self) -> bool:
        """True while the process that writes this file runs (not another that got its pid)."""
        try:
            return psutil.Process(self.supervisor_pid).create_time() == self.supervisor_started_at
        except psutil.NoSuchProcess:
            return False


def status_path(settings: Settings) -> Path:
    return settings.home / "run" / "status.json"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def this_process_started_at() -> float:
    return psutil.Process().create_time()


def write_status(path: Path, status: PlatformStatus) -> None:
    """Replace the file atomically: readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(status.model_dump_json(indent=2))
    os.replace(tmp.name, path)


def read_status(path: Path) -> PlatformStatus | None:
    """The last status written, or None when no platform ever ran with this data directory."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return PlatformStatus.model_validate_json(text)


def running_platform(path: Path) -> PlatformStatus | None:
    """The status of the platform that writes `path` while it runs; None when none does (an
    unreadable file included: only a running supervisor keeps it valid)."""
    try:
        current = read_status(path)
    except ValueError:  # pydantic's ValidationError is one
        return None
    return current if current is not None and current.supervisor_alive() else None

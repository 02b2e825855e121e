"""A small local process supervisor for ``make run``.

It starts long-running services (milvus-lite, mlflow, ``dagster dev``, bentoml servers, ...),
waits until each answers its health check, and stops all of them -- with every process they
spawned -- on exit, Ctrl-C or ``kill``.

Typical use::

    install_signal_handlers()          # SIGTERM/SIGHUP -> KeyboardInterrupt
    with Supervisor(logs_dir) as sup:  # stop_all() on exit, always
        sup.start_all(specs)
        sup.wait_forever()             # until Ctrl-C, or raise ServiceFailed if a service dies

How "no orphan process" is achieved:

* every service is started in its own session, hence its own process group whose id is the
  service's pid, so one ``os.killpg`` reaches the service and all of its descendants
  (dagster's webserver and daemon, bentoml's workers) -- unless a descendant calls ``setsid``
  itself, which none of ours do;
* stopping sends SIGTERM to the group, waits up to ``stop_timeout_s`` for the whole group to
  disappear, then sends SIGKILL to the group and waits for it to disappear;
* a second interrupt while stopping kills the remaining groups at once instead of abandoning them.

Services run in their own session, so a Ctrl-C typed in the terminal reaches only the
supervisor (the terminal's foreground process group), which then stops the services in
reverse start order.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("ragyard.supervisor")

# Interval between two health checks while a service starts.
_HEALTH_POLL_S = 0.25
# Timeout of one health check (HTTP request or TCP connect).
_HEALTH_CHECK_TIMEOUT_S = 2.0
# Interval between two "is the process group gone yet?" checks while stopping.
_STOP_POLL_S = 0.05
# How long to wait for a process group to disappear after SIGKILL. Descendants that outlived
# the service are reparented to PID 1 and stay visible to kill(2) as zombies until PID 1 reaps
# them, which some container inits only do every second or two.
_KILL_TIMEOUT_S = 10.0
# How much of a service's log a ServiceFailed message quotes.
_LOG_TAIL_LINES = 20
_LOG_TAIL_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service and how to tell that it is ready."""

    name: str  # e.g. "milvus"; also names the log file
    argv: list[str]  # command to exec
    # HTTP URL that must answer with a status below 400 for the service to be healthy.
    health_url: str | None = None
    # Or: (host, port) that must accept a TCP connection. With both set, both must pass;
    # with neither, the service counts as healthy as soon as it has been started and is running.
    health_tcp: tuple[str, int] | None = None
    ui_url: str | None = None  # logged for the user once the service is healthy
    env: dict[str, str] = field(default_factory=dict)  # merged over os.environ
    cwd: str | None = None
    startup_timeout_s: float = 120.0


class ServiceFailed(RuntimeError):
    """A service exited, or did not become healthy in time.

    The message names the service, gives its exit code (or says it is still running) and
    quotes the end of its log.
    """


@dataclass
class _Running:
    """A started service: its spec, process, and where its output of this run starts."""

    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int  # size of the (appended-to) log file before this run

    @property
    def pgid(self) -> int:
        # start_new_session=True makes the service the leader of a new process group.
        return self.proc.pid


def _restore_default_signals() -> None:
    """Runs in the child between fork and exec (``preexec_fn``).

    An ignored signal (SIG_IGN) stays ignored across exec, unlike a handled one. When ``make
    run`` is started from a non-interactive script, SIGINT (and sometimes SIGTERM) can arrive
    ignored; ``dagster dev`` would inherit that and never stop on SIGTERM/SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a whole process group; a group that no longer exists is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _describe_exit(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with code {returncode}"
    # Popen's convention: a negative code means "killed by signal -returncode".
    try:
        killed_by = signal.Signals(-returncode).name
    except ValueError:  # a real-time signal has no name in the enum
        killed_by = f"signal {-returncode}"
    return f"exited with code {returncode} (killed by {killed_by})"


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP in this (supervising) process into KeyboardInterrupt.

    So ``kill <pid>`` or closing the terminal unwinds ``with Supervisor(...)`` exactly like
    Ctrl-C, and the services get stopped. A SIGHUP that is already ignored (``nohup``) stays
    ignored, so that ``nohup make run`` keeps its meaning. Must be called from the main thread.
    """
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)


class Supervisor:
    """Starts services, waits for their health, and stops them (with all their descendants).

    Not thread-safe: use it from one thread.
    """

    def __init__(self, logs_dir: Path, stop_timeout_s: float = 15.0) -> None:
        self.logs_dir = Path(logs_dir)
        self.stop_timeout_s = stop_timeout_s
        # Services started and not yet stopped, in start order.
        self._services: dict[str, _Running] = {}

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop_all()

    # -- starting -------------------------------------------------------------------------

    def start(self, spec: ServiceSpec) -> None:
        """Spawn the service; its stdout and stderr are appended to ``logs_dir/<name>.log``."""
        if spec.name in self._services:
            raise ValueError(f"service {spec.name!r} is already running")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{spec.name}.log"
        with open(log_path, "ab") as log_file:
            # The child writes through its own copy of the descriptor: ours is closed on return.
            log_offset = log_file.tell()
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=spec.cwd,
                env={**os.environ, **spec.env},
                start_new_session=True,
                preexec_fn=_restore_default_signals,
            )
        self._services[spec.name] = _Running(spec, proc, log_path, log_offset)
        log.info("started %s (pid %d): %s; log: %s", spec.name, proc.pid, shlex.join(spec.argv), log_path)

    def wait_healthy(self, name: str) -> None:
        """Poll the service's health check until it passes.

        Raises ServiceFailed if the process exits first or ``startup_timeout_s`` passes.
        """
        svc = self._services[name]
        spec = svc.spec
        deadline = time.monotonic() + spec.startup_timeout_s
        # trust_env=False: health URLs are local, never to be sent through an HTTP(S)_PROXY.
        with httpx.Client(timeout=_HEALTH_CHECK_TIMEOUT_S, trust_env=False) as client:
            while True:
                if svc.proc.poll() is not None:
                    raise self._failure(svc, f"{_describe_exit(svc.proc.returncode)} before becoming healthy")
                if self._is_healthy(spec, client):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._failure(
                        svc,
                        f"timed out: not healthy within {spec.startup_timeout_s:g} s "
                        f"(still running as pid {svc.proc.pid})",
                    )
                time.sleep(min(_HEALTH_POLL_S, remaining))
        if spec.ui_url:
            log.info("%s is healthy: %s", name, spec.ui_url)
        else:
            log.info("%s is healthy", name)

    def start_all(self, specs: list[ServiceSpec]) -> None:
        """Start every service in order, then wait for each to be healthy, in the same order.

        Starting them all first lets slow services boot in parallel.
        """
        for spec in specs:
            self.start(spec)
        for spec in specs:
            self.wait_healthy(spec.name)

    @staticmethod
    def _is_healthy(spec: ServiceSpec, client: httpx.Client) -> bool:
        if spec.health_tcp is not None:
            try:
                with socket.create_connection(spec.health_tcp, timeout=_HEALTH_CHECK_TIMEOUT_S):
                    pass
            except OSError:
                return False
        if spec.health_url is not None:
            try:
                response = client.get(spec.health_url)
            except httpx.HTTPError:
                return False
            if response.status_code >= 400:
                return False
        return True

    # -- watching -------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise ServiceFailed if any started (and not stopped) service has exited."""
        for svc in self._services.values():
            if svc.proc.poll() is not None:
                raise self._failure(svc, _describe_exit(svc.proc.returncode))

    def wait_forever(self, poll_s: float = 1.0) -> None:
        """Block until a service dies, then raise ServiceFailed.

        Only that (or the caller's KeyboardInterrupt, e.g. Ctrl-C) ends it.
        """
        while True:
            self.check_alive()
            time.sleep(poll_s)

    def pids(self) -> dict[str, int]:
        """The pid (= process group id) of every started and not yet stopped service."""
        return {name: svc.proc.pid for name, svc in self._services.items()}

    def _failure(self, svc: _Running, what: str) -> ServiceFailed:
        tail = self._log_tail(svc)
        return ServiceFailed(
            f"service {svc.spec.name!r} {what}\n"
            f"--- last {_LOG_TAIL_LINES} lines of {svc.log_path} ---\n"
            f"{tail if tail else '(no output)'}"
        )

    @staticmethod
    def _log_tail(svc: _Running) -> str:
        """The last lines the service wrote in this run (not earlier runs appending to the log)."""
        with open(svc.log_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(svc.log_offset, size - _LOG_TAIL_MAX_BYTES))
            data = f.read()
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:])

    # -- stopping -------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Stop every service in reverse start order. Idempotent."""
        try:
            while self._services:
                name = next(reversed(self._services))  # the last started
                self._stop(self._services[name], grace_s=self.stop_timeout_s)
                del self._services[name]
        except KeyboardInterrupt:
            # A second Ctrl-C (or SIGTERM) while waiting for graceful stops: don't abandon the
            # remaining services as orphans; kill their groups at once, then let it propagate.
            log.warning("interrupted while stopping: killing the remaining services")
            while self._services:
                _name, svc = self._services.popitem()
                self._stop(svc, grace_s=0)
            raise

    def _stop(self, svc: _Running, grace_s: float) -> None:
        """SIGTERM the service's group, SIGKILL it after ``grace_s``, wait until it is gone."""
        name, pgid = svc.spec.name, svc.pgid
        log.info("stopping %s (process group %d)", name, pgid)
        _signal_group(pgid, signal.SIGTERM)
        if self._wait_group_gone(svc, grace_s):
            return
        if grace_s > 0:
            log.warning("%s did not stop within %g s of SIGTERM: sending SIGKILL", name, grace_s)
        _signal_group(pgid, signal.SIGKILL)
        if not self._wait_group_gone(svc, _KILL_TIMEOUT_S):
            log.error("process group %d of %s still exists %g s after SIGKILL", pgid, name, _KILL_TIMEOUT_S)

    @staticmethod
    def _wait_group_gone(svc: _Running, timeout_s: float) -> bool:
        """Poll until no process of the service's group remains; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Reap the service as soon as it exits: as a zombie it would still count as a member.
            svc.proc.poll()
            try:
                os.killpg(svc.pgid, 0)
            except ProcessLookupError:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_STOP_POLL_S)

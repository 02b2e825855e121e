"""A small local process supervisor: start services, wait for their health, stop them all.

It starts long-running services (milvus-lite, mlflow, ``dagster dev``, bentoml servers, ...),
checks their health, and stops them -- with every process they spawned -- on exit, Ctrl-C or
``kill``. Restarting crashed services is ``ragyard.keeper``'s job, on top of this.

Typical use::

    install_signal_handlers()          # SIGTERM/SIGHUP -> KeyboardInterrupt
    with Supervisor(logs_dir) as sup:  # stop_all() on exit, always
        sup.start_all(specs)           # raises ServiceFailed if one does not become healthy
        ...

How "no orphan process" is achieved:

* every service is started in its own session, hence its own process group whose id is the
  service's pid, so one ``os.killpg`` reaches the service and the descendants that stay in its
  group (dagster's webserver and daemon);
* BentoML's process manager (circus) starts its workers in sessions of their own, out of reach of
  the group: the supervisor keeps a list of every descendant it has seen (``refresh_trees``, and
  again just before stopping) and signals those one by one (psutil makes sure a pid still names
  the same process), so they go too, even when the service itself was killed first;
* stopping sends SIGTERM to the group and the descendants, waits up to ``stop_timeout_s`` for all
  of them to disappear, then sends SIGKILL and waits again;
* a second interrupt while stopping kills the remaining services at once instead of abandoning them.

``ServiceSpec`` (what a service is, how to check its health) lives in ``ragyard.service_spec``.

Services run in their own session, so a Ctrl-C typed in the terminal reaches only the
supervisor (the terminal's foreground process group), which then stops the services in
reverse start order.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ragyard.service_spec import (
    HEALTH_POLL_S,
    ServiceSpec,
    health_client,
    is_healthy,
    port_in_use,
)

log = logging.getLogger("ragyard.supervisor")

# Interval between two "is the process group gone yet?" checks while stopping.
_STOP_POLL_S = 0.05
# How long to wait for a process group to disappear after SIGKILL. Descendants that outlived
# the service are reparented to PID 1 and stay visible to kill(2) as zombies until PID 1 reaps
# them, which some container inits only do every second or two.
_KILL_TIMEOUT_S = 10.0
# How much of a service's log a failure report quotes.
_LOG_TAIL_LINES = 20
_LOG_TAIL_MAX_BYTES = 64 * 1024


class ServiceFailed(RuntimeError):
    """A service exited, did not become healthy in time, or could not be started.

    The message names the service, gives its exit code (or says it is still running) and
    quotes the end of its log.
    """


@dataclass
class _Running:
    """A started service: its spec, process, where its output of this run starts, its descendants."""

    spec: ServiceSpec
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_offset: int  # size of the (appended-to) log file before this run
    # Every descendant seen so far, by pid; circus's workers among them lead sessions of their own.
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def pgid(self) -> int:
        # start_new_session=True makes the service the leader of a new process group.
        return self.proc.pid

    def refresh_descendants(self) -> None:
        if self.proc.poll() is not None:
            return  # its children are reparented already; the ones seen before are still listed
        try:
            seen = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        # is_running(): still there, if only as a zombie, and not a new process that got its pid.
        self.descendants = {p.pid: p for p in [*self.descendants.values(), *seen] if p.is_running()}


def _restore_default_signals() -> None:
    """Runs in the child between fork and exec (``preexec_fn``).

    An ignored signal (SIG_IGN) stays ignored across exec, unlike a handled one. When ``make
    run`` is started from a non-interactive script, SIGINT (and sometimes SIGTERM) can arrive
    ignored; ``dagster dev`` would inherit that and never stop on SIGTERM/SIGINT.

    The keeper spawns from a thread while others run, where Python warns that a ``preexec_fn``
    may deadlock on a lock another thread held at fork; this one only calls sigaction(2) through
    ``signal.signal``, which takes no such lock (CPython re-initialises its own after fork).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_tree(svc: _Running, sig: signal.Signals) -> None:
    """Send ``sig`` to the service's process group and to every descendant seen; gone ones are fine."""
    try:
        os.killpg(svc.pgid, sig)
    except ProcessLookupError:
        pass
    for process in svc.descendants.values():
        try:
            process.send_signal(sig)  # psutil refuses if the pid now names another process
        except psutil.NoSuchProcess:
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
    """Starts services, checks their health, and stops them (with all their descendants).

    Thread-safe: ``ragyard.keeper`` starts, polls and stops services from its own thread while
    the main thread reads ``pids()`` and, at the end, calls ``stop_all()``.
    """

    def __init__(self, logs_dir: Path, stop_timeout_s: float = 15.0) -> None:
        self.logs_dir = Path(logs_dir)
        self.stop_timeout_s = stop_timeout_s
        # Services started and not yet stopped, in start order.
        self._services: dict[str, _Running] = {}
        self._lock = threading.RLock()
        self._closing = False  # stop_all() has begun: start() refuses, so nothing outlives it

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.stop_all()

    # -- starting -------------------------------------------------------------------------

    def start(self, spec: ServiceSpec) -> int:
        """Spawn the service and return its pid; its output is appended to ``logs_dir/<name>.log``.

        Raises ServiceFailed, starting nothing, when another process already listens on the
        service's port (the health check would otherwise pass against that process).
        """
        if spec.address is not None and port_in_use(spec.address):
            host, port = spec.address
            raise ServiceFailed(
                f"service {spec.name!r} not started: {host}:{port} is already in use by another process"
            )
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{spec.name}.log"
        with self._lock:
            if self._closing:
                raise ServiceFailed(f"service {spec.name!r} not started: the supervisor is stopping")
            if spec.name in self._services:
                raise ValueError(f"service {spec.name!r} is already running")
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
        return proc.pid

    def wait_healthy(self, name: str) -> None:
        """Poll the service's health check until it passes.

        Raises ServiceFailed if the process exits first or ``startup_timeout_s`` passes.
        """
        svc = self._running(name)
        spec = svc.spec
        deadline = time.monotonic() + spec.startup_timeout_s
        with health_client() as client:
            while True:
                if (exited := self.exit_reason(name)) is not None:
                    raise self.failure(name, f"{exited} before becoming healthy")
                if is_healthy(spec, client):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self.failure(
                        name,
                        f"timed out: not healthy within {spec.startup_timeout_s:g} s "
                        f"(still running as pid {svc.proc.pid})",
                    )
                time.sleep(min(HEALTH_POLL_S, remaining))
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

    # -- watching -------------------------------------------------------------------------

    def exit_reason(self, name: str) -> str | None:
        """None while the service runs; else how it ended (exit code, or the signal that killed it)."""
        returncode = self._running(name).proc.poll()
        return None if returncode is None else _describe_exit(returncode)

    def refresh_trees(self) -> None:
        """Remember every service's current descendants, to stop them even after their parent died."""
        with self._lock:
            services = list(self._services.values())
        for svc in services:
            svc.refresh_descendants()

    def spec(self, name: str) -> ServiceSpec:
        """What a started (and not yet stopped) service was started as."""
        return self._running(name).spec

    def pids(self) -> dict[str, int]:
        """The pid (= process group id) of every started and not yet stopped service."""
        with self._lock:
            return {name: svc.proc.pid for name, svc in self._services.items()}

    def failure(self, name: str, what: str) -> ServiceFailed:
        """A ServiceFailed saying ``what`` happened to the service, quoting the end of its log."""
        svc = self._running(name)
        tail = self._log_tail(svc)
        return ServiceFailed(
            f"service {name!r} {what}\n"
            f"--- last {_LOG_TAIL_LINES} lines of {svc.log_path} ---\n"
            f"{tail if tail else '(no output)'}"
        )

    def _running(self, name: str) -> _Running:
        with self._lock:
            return self._services[name]

    @staticmethod
    def _log_tail(svc: _Running) -> str:
        """The last lines the service wrote in this run (not earlier runs appending to the log)."""
        with open(svc.log_path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(svc.log_offset, size - _LOG_TAIL_MAX_BYTES))
            data = f.read()
        return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:])

    # -- stopping -------------------------------------------------------------------------

    def stop(self, name: str) -> None:
        """Stop one service (what is left of it, if it exited by itself) and forget it."""
        svc = self._running(name)
        self._stop(svc, grace_s=self.stop_timeout_s)
        self._forget(svc)

    def kill(self, name: str) -> None:
        """SIGKILL the service and every process it started, at once, as a crash would; then forget it."""
        svc = self._running(name)
        svc.refresh_descendants()
        log.info("killing %s (process group %d)", name, svc.pgid)
        self._kill(svc)
        self._forget(svc)

    def stop_all(self) -> None:
        """Stop every service in reverse start order. Idempotent."""
        with self._lock:
            self._closing = True
        try:
            while services := self._started():
                svc = services[-1]  # the last started
                self._stop(svc, grace_s=self.stop_timeout_s)
                self._forget(svc)
        except KeyboardInterrupt:
            # A second Ctrl-C (or SIGTERM) while waiting for graceful stops: don't abandon the
            # remaining services as orphans; kill them at once, then let it propagate.
            log.warning("interrupted while stopping: killing the remaining services")
            for svc in reversed(self._started()):
                self._stop(svc, grace_s=0)
                self._forget(svc)
            raise

    def _started(self) -> list[_Running]:
        with self._lock:
            return list(self._services.values())

    def _forget(self, svc: _Running) -> None:
        with self._lock:
            if self._services.get(svc.spec.name) is svc:
                del self._services[svc.spec.name]

    def _stop(self, svc: _Running, grace_s: float) -> None:
        """SIGTERM the service's tree, SIGKILL it after ``grace_s``, wait until it is gone."""
        name, pgid = svc.spec.name, svc.pgid
        svc.refresh_descendants()
        log.info("stopping %s (process group %d)", name, pgid)
        _signal_tree(svc, signal.SIGTERM)
        if self._wait_tree_gone(svc, grace_s):
            return
        if grace_s > 0:
            log.warning("%s did not stop within %g s of SIGTERM: sending SIGKILL", name, grace_s)
        self._kill(svc)

    def _kill(self, svc: _Running) -> None:
        """SIGKILL the service's tree and wait until it is gone."""
        _signal_tree(svc, signal.SIGKILL)
        if not self._wait_tree_gone(svc, _KILL_TIMEOUT_S):
            log.error(
                "process group %d of %s still exists %g s after SIGKILL", svc.pgid, svc.spec.name, _KILL_TIMEOUT_S
            )

    @staticmethod
    def _wait_tree_gone(svc: _Running, timeout_s: float) -> bool:
        """Poll until no process of the service's group and no descendant remains; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            # Reap the service as soon as it exits: as a zombie it would still count as a member.
            svc.proc.poll()
            try:
                os.killpg(svc.pgid, 0)
            except ProcessLookupError:
                if not any(p.is_running() for p in svc.descendants.values()):
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_STOP_POLL_S)

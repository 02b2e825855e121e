"""Keeps the platform's services running: a crash is restarted, a crash loop is given up on.

``ServiceKeeper`` starts every service through a ``Supervisor`` and watches them from a thread of
its own (``ragyard run``'s main thread meanwhile builds the index):

* a service that exits, or is not healthy within its ``startup_timeout_s``, has crashed: the
  keeper logs why (exit code or signal, and the end of its log), stops what is left of its
  process tree, and starts it again after a jittered exponential backoff
  (``restart_backoff_s``, doubling with every crash in the window, at most ``restart_backoff_max_s``);
* a restarted service counts as up only once its health check passes again;
* a service that crashed ``max_crashes`` times within ``crash_window_s`` is marked failed and left
  alone; the others keep serving. A service that cannot start at all (its port taken by another
  process, a bad setting) goes the same way;
* every change of state goes to the status file (``ragyard.status``) that
  ``python -m ragyard status`` reads.

Typical use::

    with ServiceKeeper(specs, logs_dir, settings.supervisor, status_file) as keeper:
        keeper.start_all()     # returns once every service is up, failed, or has crashed once
        ...
        keeper.wait_forever()  # returns only when every service has failed
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ragyard.settings import SupervisorSettings
from ragyard.status import (
    PlatformStatus,
    ServiceState,
    ServiceStatus,
    now,
    this_process_started_at,
    write_status,
)
from ragyard.supervisor import (
    HEALTH_POLL_S,
    ServiceFailed,
    ServiceSpec,
    Supervisor,
    health_client,
    is_healthy,
)

log = logging.getLogger("ragyard.supervisor")

# How often the keeper lists every service's descendants (to stop them after their parent died).
_TREE_REFRESH_S = 2.0


def restart_delay(crashes: int, settings: SupervisorSettings) -> float:
    """Seconds before restarting after the `crashes`-th crash in the window: exponential, with
    jitter (between half and all of it), so that services crashing together do not restart in step."""
    full = min(settings.restart_backoff_max_s, settings.restart_backoff_s * 2 ** (crashes - 1))
    return random.uniform(full / 2, full)


@dataclass
class _Kept:
    """What the keeper knows about one service."""

    spec: ServiceSpec
    state: ServiceState = ServiceState.STARTING
    pid: int | None = None  # None: not started yet, or waiting out its backoff
    restarts: int = 0
    last_exit: str | None = None
    since: dt.datetime = field(default_factory=now)
    crashes: collections.deque[float] = field(default_factory=collections.deque)  # monotonic, within the window
    start_at: float = 0.0  # monotonic time of the next start, while pid is None
    healthy_by: float = 0.0  # monotonic deadline of its health check, while starting

    @property
    def first_attempt_over(self) -> bool:
        """Up, failed, or crashed at least once."""
        return self.state in (ServiceState.UP, ServiceState.FAILED) or self.last_exit is not None

    def status(self) -> ServiceStatus:
        return ServiceStatus(
            name=self.spec.name,
            state=self.state,
            pid=self.pid,
            restarts=self.restarts,
            last_exit=self.last_exit,
            url=self.spec.ui_url,
            since=self.since,
        )


class ServiceKeeper:
    def __init__(
        self, specs: list[ServiceSpec], logs_dir: Path, settings: SupervisorSettings, status_file: Path | None = None
    ) -> None:
        self.settings = settings
        self.status_file = status_file
        self.supervisor = Supervisor(logs_dir, settings.stop_timeout_s)
        self._kept = {spec.name: _Kept(spec) for spec in specs}
        self._started_at = this_process_started_at()
        self._changed = threading.Condition()  # guards the states; notified on every change
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # what broke the watching thread, if anything

    def __enter__(self) -> ServiceKeeper:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    # -- the main thread's side ---------------------------------------------------------------

    def start_all(self) -> list[ServiceStatus]:
        """Start every service (in parallel) and return once each is up, or has failed, or has crashed
        at least once: one in a crash loop of long start-ups (minutes each) must not hold back the
        report of the others; it is retried in the background."""
        self._publish()
        self._thread = threading.Thread(target=self._watch, name="ragyard-keeper", daemon=True)
        self._thread.start()
        return self._wait_until(lambda kept: all(k.first_attempt_over for k in kept))

    def wait_forever(self) -> list[ServiceStatus]:
        """Block while any service is not failed (until Ctrl-C, in practice)."""
        return self._wait_until(lambda kept: all(k.state is ServiceState.FAILED for k in kept))

    def status(self) -> list[ServiceStatus]:
        with self._changed:
            return [k.status() for k in self._kept.values()]

    def close(self) -> None:
        """Stop watching, then stop every service with all its processes. Idempotent."""
        self._stopping.set()
        try:
            if self._thread is not None:
                self._thread.join()
        finally:
            self.supervisor.stop_all()
            with self._changed:
                for kept in self._kept.values():
                    if kept.state is not ServiceState.FAILED:
                        self._enter(kept, ServiceState.STOPPED, pid=None)
            self._publish()

    def _wait_until(self, done) -> list[ServiceStatus]:
        with self._changed:
            while not done(self._kept.values()):
                if self._error is not None:
                    raise RuntimeError("the supervisor stopped watching the services") from self._error
                # A bounded wait, so that Ctrl-C is noticed promptly.
                self._changed.wait(1.0)
            return [k.status() for k in self._kept.values()]

    # -- the watching thread ------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            with health_client() as client, ThreadPoolExecutor(len(self._kept) or 1) as pool:
                trees_refreshed = 0.0
                while not self._stopping.is_set():
                    for kept in self._kept.values():
                        if not self._stopping.is_set():
                            self._step(kept)
                    self._check_health(pool, client)
                    if time.monotonic() - trees_refreshed >= _TREE_REFRESH_S:
                        self.supervisor.refresh_trees()
                        trees_refreshed = time.monotonic()
                    self._stopping.wait(HEALTH_POLL_S)
        except BaseException as exc:
            log.exception("the supervisor's watching thread failed")
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def _step(self, kept: _Kept) -> None:
        """Start what is due, notice what exited or never became healthy."""
        name = kept.spec.name
        if kept.state in (ServiceState.FAILED, ServiceState.STOPPED):
            return
        if kept.pid is None:
            if time.monotonic() >= kept.start_at:
                self._start(kept)
            return
        if (exited := self.supervisor.exit_reason(name)) is not None:
            self._crashed(kept, exited)
        elif kept.state is not ServiceState.UP and time.monotonic() > kept.healthy_by:
            self._crashed(kept, f"not healthy within {kept.spec.startup_timeout_s:g} s")

    def _check_health(self, pool: ThreadPoolExecutor, client: httpx.Client) -> None:
        """One health check of every started service that is not up yet, all at once."""
        waiting = [k for k in self._kept.values() if k.pid is not None and k.state is not ServiceState.UP]
        for kept, healthy in zip(waiting, pool.map(lambda k: is_healthy(k.spec, client), waiting), strict=True):
            if healthy and self.supervisor.exit_reason(kept.spec.name) is None:
                again = " again" if kept.state is ServiceState.RESTARTING else ""
                url = f": {kept.spec.ui_url}" if kept.spec.ui_url else ""
                log.info("%s is healthy%s%s", kept.spec.name, again, url)
                # The processes it started while booting (BentoML's workers): known from now on.
                self.supervisor.refresh_trees()
                with self._changed:
                    self._enter(kept, ServiceState.UP)
                self._publish()

    def _start(self, kept: _Kept) -> None:
        try:
            pid = self.supervisor.start(kept.spec)
        except ServiceFailed as exc:  # nothing was started: its port is taken, or we are stopping
            if not self._stopping.is_set():
                log.warning("%s", exc)
                self._count_crash(kept, str(exc))
            return
        kept.healthy_by = time.monotonic() + kept.spec.startup_timeout_s
        with self._changed:
            if kept.state is ServiceState.RESTARTING:
                kept.restarts += 1
            kept.pid = pid
        self._publish()

    def _crashed(self, kept: _Kept, reason: str) -> None:
        """Report the crash with the end of the service's log, clear what is left of it, count it."""
        log.warning("%s", self.supervisor.failure(kept.spec.name, reason))
        self.supervisor.stop(kept.spec.name)
        self._count_crash(kept, reason)

    def _count_crash(self, kept: _Kept, reason: str) -> None:
        """Restart after a backoff, or give up after too many crashes in the window."""
        name, now_s = kept.spec.name, time.monotonic()
        kept.crashes.append(now_s)
        while now_s - kept.crashes[0] > self.settings.crash_window_s:
            kept.crashes.popleft()
        crashes, limit, window = len(kept.crashes), self.settings.max_crashes, self.settings.crash_window_s
        with self._changed:
            if crashes >= limit:
                log.error(
                    "GIVING UP on %s after %d crashes within %g s (last: %s): it is marked failed; the other "
                    "services keep running",
                    name,
                    crashes,
                    window,
                    reason,
                )
                self._enter(kept, ServiceState.FAILED, pid=None, last_exit=reason)
            else:
                delay = restart_delay(crashes, self.settings)
                kept.start_at = now_s + delay
                log.warning(
                    "restarting %s in %.1f s (crash %d; given up after %d within %g s)",
                    name,
                    delay,
                    crashes,
                    limit,
                    window,
                )
                self._enter(kept, ServiceState.RESTARTING, pid=None, last_exit=reason)
        self._publish()

    # -- shared -------------------------------------------------------------------------------

    def _enter(self, kept: _Kept, state: ServiceState, **fields) -> None:
        """Change a service's state (the caller holds the condition)."""
        for name, value in fields.items():
            setattr(kept, name, value)
        if kept.state is not state:
            kept.state, kept.since = state, now()
        self._changed.notify_all()

    def _publish(self) -> None:
        if self.status_file is None:
            return
        with self._changed:
            status = PlatformStatus(
                supervisor_pid=os.getpid(),
                supervisor_started_at=self._started_at,
                updated_at=now(),
                services=[k.status() for k in self._kept.values()],
            )
            write_status(self.status_file, status)

"""Extraction off the request path: an accepted exchange waits in a bounded queue, one worker extracts
the jobs in the order they came (so a user's later "I moved to Berlin" never lands before the earlier
"I live in Paris"), and a job whose model, safety check, embedder or store cannot answer is retried
with a doubling backoff, holding the line (every later job needs the same services), until it is
`max_age_s` old: nothing is lost to an outage shorter than that, and the metrics say what waits.

`JobQueue` is where jobs wait. `LocalQueue` is in-process: a restart loses what waits in it. The durable
queue on the broker (ragyard/events, to come) takes its place: `put` publishes, `get` consumes, `done`
acknowledges once the job has ended, so that a crash hands the job to the next consumer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from bentos.memory import metrics
from bentos.memory.errors import DependencyDown
from bentos.memory.rows import Owner
from bentos.memory.store import StaleNeighbours
from ragyard.contracts.memory import AppliedOperation, JobState, JobStatus

logger = logging.getLogger("ragyard.memory.jobs")
FINISHED_KEPT = 10_000  # statuses of ended jobs kept for GET /v1/memories/jobs/{id}


@dataclass
class ExtractionJob:
    owner: Owner
    turns: list[str]  # the user's turns as sent; dropped once the job has ended
    at: float
    ttl_s: int | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)
    state: JobState = "queued"
    attempts: int = 0
    finished_at: float | None = None
    error: str | None = None
    operations: list[AppliedOperation] = field(default_factory=list)

    def status(self) -> JobStatus:
        return JobStatus(
            id=self.id,
            state=self.state,
            attempts=self.attempts,
            created_at=self.created_at,
            finished_at=self.finished_at,
            error=self.error,
            operations=self.operations,
        )


class JobQueue(Protocol):
    def put(self, job: ExtractionJob) -> None:
        """Accept a job, or raise DependencyDown("queue") when no more fit."""

    async def get(self) -> ExtractionJob: ...

    def done(self, job: ExtractionJob) -> None: ...


class LocalQueue:
    def __init__(self, size: int):
        self._queue: asyncio.Queue[ExtractionJob] = asyncio.Queue(size)

    def put(self, job: ExtractionJob) -> None:
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise DependencyDown(
                "queue", f"the extraction queue is full ({self._queue.maxsize} exchanges wait); retry later"
            ) from None

    async def get(self) -> ExtractionJob:
        return await self._queue.get()

    def done(self, job: ExtractionJob) -> None:
        self._queue.task_done()


Extract = Callable[[ExtractionJob], Awaitable[list[AppliedOperation]]]


class ExtractionWorker:
    def __init__(self, queue: JobQueue, extract: Extract, backoff_s: float, backoff_max_s: float, max_age_s: float):
        self.queue, self.extract = queue, extract
        self.backoff_s, self.backoff_max_s, self.max_age_s = backoff_s, backoff_max_s, max_age_s
        self.jobs: OrderedDict[str, ExtractionJob] = OrderedDict()

    def submit(self, job: ExtractionJob) -> None:
        try:
            self.queue.put(job)
        except DependencyDown:
            metrics.REFUSED.inc()
            raise
        self.jobs[job.id] = job
        metrics.QUEUED.metric().inc()
        while len(self.jobs) > FINISHED_KEPT and (oldest := next(iter(self.jobs.values()))).finished_at:
            del self.jobs[oldest.id]

    def status(self, owner: Owner, job_id: str) -> JobStatus | None:
        """A job of this user's, or None (another user's job is as unknown as a missing one)."""
        job = self.jobs.get(job_id)
        return job.status() if job is not None and job.owner == owner else None

    async def run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.process(job)
            finally:
                job.turns = []
                self.queue.done(job)
                metrics.QUEUED.metric().dec()

    async def process(self, job: ExtractionJob) -> None:
        backoff = self.backoff_s
        while True:
            job.state, job.attempts = "running", job.attempts + 1
            try:
                job.operations = await self.extract(job)
            except (DependencyDown, StaleNeighbours) as exc:
                dependency = exc.dependency if isinstance(exc, DependencyDown) else "store"
                job.error = str(exc)
                if time.time() - job.created_at >= self.max_age_s:
                    self.end(job, "dropped")
                    logger.error("extraction job %s dropped after %d attempts: %s", job.id, job.attempts, exc)
                    return
                job.state = "retrying"
                metrics.RETRIES.labels(dependency=dependency).inc()
                logger.warning("extraction job %s: %s; retrying in %.0f s", job.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, self.backoff_max_s)
            except Exception as exc:  # noqa: BLE001 - the exchange itself cannot be used (refused by safety, a 4xx)
                job.error = f"{type(exc).__name__}: {exc}"
                self.end(job, "failed")
                logger.warning("extraction job %s failed: %s", job.id, job.error)
                return
            else:
                job.error = None
                self.end(job, "done")
                metrics.SECONDS.observe(time.time() - job.created_at)
                for operation in job.operations:
                    metrics.OPERATIONS.labels(op=operation.op).inc()
                return

    def end(self, job: ExtractionJob, state: JobState) -> None:
        job.state, job.finished_at = state, time.time()
        metrics.JOBS.labels(outcome=state).inc()

"""What the memory bento does, route by route, put together from its settings: every text is
pseudonymized (safety bento), embedded (embedder bento) and stored (Milvus and the state database);
exchanges go to the extraction worker, which asks the LLM bento and applies what the gate lets through."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import httpx
from pymilvus import MilvusException
from sqlalchemy.exc import SQLAlchemyError

from bentos.memory import metrics
from bentos.memory.errors import DependencyDown, invalid, not_found, too_large
from bentos.memory.extraction import ExtractionModel, speaks_of_oneself
from bentos.memory.gate import Neighbour, Thresholds, decide
from bentos.memory.jobs import ExtractionJob, ExtractionWorker, LocalQueue
from bentos.memory.privacy import Pseudonymizer
from bentos.memory.rows import MemoryRow, MemoryRows, Owner
from bentos.memory.store import Embedded, MemoryStore
from bentos.memory.vectors import MemoryVectors
from ragyard import memory_collection as mc
from ragyard.clients.embedder import EmbedderClient
from ragyard.clients.safety import SafetyClient
from ragyard.contracts.memory import (
    AddMemory,
    AddResult,
    AppliedOperation,
    JobStatus,
    MemoryHit,
    MemoryItem,
    MemoryPage,
    SearchMemories,
    SearchResult,
    UpdateMemory,
)
from ragyard.kit.errors import Unavailable
from ragyard.settings import MemoryBentoSettings
from router.state import database

logger = logging.getLogger("ragyard.memory")
CLOCK_SKEW_S = 300.0  # how far in the future an exchange's `at` may lie


def item(row: MemoryRow) -> MemoryItem:
    return MemoryItem(
        id=row.id,
        text=row.text,
        origin=row.origin,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=None if row.expires_at >= mc.NEVER else row.expires_at,
    )


def hit(row: MemoryRow, score: float) -> MemoryHit:
    return MemoryHit(**item(row).model_dump(), score=score)


class Memories:
    def __init__(self, settings: MemoryBentoSettings):
        self.config = config = settings.memory
        self.embed_max_chars = settings.embedder.max_chars_per_text
        self.http = httpx.AsyncClient(timeout=config.embed_timeout_s)
        self.embedder = EmbedderClient(settings.embedder.url, timeout_s=config.embed_timeout_s, pool=self.http)
        self.pseudonymizer = Pseudonymizer(
            SafetyClient(settings.safety.url, timeout_s=config.safety_timeout_s, pool=self.http), config.safety_policy
        )
        self.model = ExtractionModel(
            settings.llm.url, config.extraction_model, config.extraction_max_tokens, config.extraction_timeout_s
        )
        self.vectors = MemoryVectors(
            settings.milvus.uri,
            settings.milvus.token,
            config.collection,
            settings.embedder.dim,
            settings.milvus.timeout_s,
        )
        self.store = MemoryStore(
            MemoryRows(database(settings, "memories")), self.vectors, config.max_per_user, config.duplicate_similarity
        )
        self.worker = ExtractionWorker(
            LocalQueue(config.queue_size),
            self.extract,
            config.retry_backoff_s,
            config.retry_backoff_max_s,
            config.job_max_age_s,
        )
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """The extraction worker and the purge of expired memories, in the serving event loop."""
        self._tasks = [
            asyncio.create_task(self.worker.run(), name="memory-extraction"),
            asyncio.create_task(self.purge_forever(), name="memory-purge"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.model.aclose()
        await self.http.aclose()
        self.store.rows.close()

    def is_ready(self) -> bool:
        try:
            self.vectors.client()
            return True
        except Exception as exc:  # noqa: BLE001 - Milvus down or the collection unusable: not ready, and why in the log
            logger.warning("memory collection unavailable: %s", exc)
            self.vectors.forget()
            return False

    # ---- the steps every write shares ----

    async def blocking(self, function, *args):
        """A store call in a worker thread; a store that cannot answer is DependencyDown (503, or a retry)."""
        try:
            return await anyio.to_thread.run_sync(function, *args)
        except MilvusException as exc:
            self.vectors.forget()
            raise DependencyDown("milvus", str(exc)) from exc
        except SQLAlchemyError as exc:
            raise DependencyDown("database", f"{type(exc).__name__}: {exc}") from exc

    async def embed(self, texts: list[str]) -> list[list[float]]:
        try:
            return (await self.embedder.aembed(texts, self.config.embed_timeout_s)).embeddings
        except Unavailable as exc:
            raise DependencyDown("embedder", exc.message) from exc

    async def stored_text(self, text: str, field: str) -> Embedded:
        """A memory's text as it is kept: within the bounds, pseudonymized, embedded."""
        if len(text) > self.config.max_text_chars:
            raise too_large(
                f"{field}: {len(text)} characters exceed memory.max_text_chars={self.config.max_text_chars}", field
            )
        [kept] = await self.pseudonymizer.texts([text], field)
        if len(kept.encode()) > mc.TEXT_MAX_BYTES:
            raise too_large(f"{field}: {len(kept.encode())} bytes once pseudonymized exceed {mc.TEXT_MAX_BYTES}", field)
        [vector] = await self.embed([kept])
        return Embedded(kept, vector)

    def expiry(self, at: float, ttl_s: int | None) -> float:
        ttl = ttl_s or self.config.default_ttl_s
        return at + ttl if ttl else float(mc.NEVER)

    @staticmethod
    def moment(at: float | None) -> float:
        now = time.time()
        if at is not None and at > now + CLOCK_SKEW_S:
            raise invalid(f"at: {at} lies in the future (now {now:.0f})", "at")
        return now if at is None else at

    # ---- routes ----

    async def add(self, request: AddMemory) -> tuple[int, AddResult]:
        """(HTTP status, result): 201 added, 200 duplicate or skipped, 202 queued for extraction."""
        if request.opt_out:
            return 200, AddResult(status="skipped", reason="the user opted out of memory")
        owner, at = Owner(request.scope, request.user), self.moment(request.at)
        if request.text is not None:
            memory = await self.stored_text(request.text, "text")
            added = await self.blocking(self.store.add, owner, memory, "text", at, self.expiry(at, request.ttl_s))
            metrics.OPERATIONS.labels(op="add" if added.status == "added" else "duplicate").inc()
            return (201 if added.status == "added" else 200), AddResult(
                status=added.status, memory=item(added.row), evicted=added.evicted
            )
        messages = request.messages or []  # the contract gives either text or messages
        size = sum(len(m.content) for m in messages)
        if size > self.config.max_exchange_chars:
            raise too_large(
                f"messages: {size} characters exceed memory.max_exchange_chars={self.config.max_exchange_chars}",
                "messages",
            )
        turns = [m.content for m in messages if m.role == "user" and m.content.strip()]
        if not turns:
            return 200, AddResult(status="skipped", reason="no user turn to extract from")
        if self.config.first_person_filter and not any(speaks_of_oneself(turn) for turn in turns):
            return 200, AddResult(status="skipped", reason="the user said nothing about themselves")
        job = ExtractionJob(owner, turns, at, request.ttl_s)
        self.worker.submit(job)
        return 202, AddResult(status="queued", job_id=job.id)

    async def extract(self, job: ExtractionJob) -> list[AppliedOperation]:
        """One exchange's memories: the extraction worker's step, retried while a service is down."""
        turn = "\n".join(await self.pseudonymizer.texts(job.turns, "messages"))
        [turn_vector] = await self.embed([turn[: self.embed_max_chars]])
        near = await self.blocking(self.store.neighbours, job.owner, turn_vector, self.config.neighbours)
        proposals = await self.model.propose(turn, [row.text for row, _ in near])
        texts = list(
            dict.fromkeys(
                [
                    *(p.text for p in proposals if 0 < len(p.text) <= self.config.max_text_chars),
                    *(row.text for row, _ in near),
                ]
            )
        )
        vectors = dict(zip(texts, await self.embed(texts), strict=True)) if texts else {}
        neighbours = [Neighbour(row, vectors[row.text], similarity) for row, similarity in near]
        plan, dropped = decide(
            proposals, vectors, neighbours, turn, Thresholds(self.config.update_similarity, self.config.max_text_chars)
        )
        applied = (
            await self.blocking(self.store.apply, job.owner, plan, "extraction", job.at, self.expiry(job.at, job.ttl_s))
            if plan
            else []
        )
        return applied + dropped

    async def search(self, request: SearchMemories) -> SearchResult:
        if request.top_k > self.config.max_top_k:
            raise invalid(f"top_k: {request.top_k} exceeds memory.max_top_k={self.config.max_top_k}", "top_k")
        if len(request.query) > self.embed_max_chars:
            raise too_large(f"query: {len(request.query)} characters exceed {self.embed_max_chars}", "query")
        # The query is not kept: it is searched as it comes (the router sends it with its own placeholders).
        vector = None if request.mode == "bm25" else (await self.embed([request.query]))[0]
        found = await self.blocking(
            self.store.search, Owner(request.scope, request.user), request.mode, request.query, vector, request.top_k
        )
        return SearchResult(memories=[hit(row, score) for row, score in found])

    async def page(self, owner: Owner, limit: int, offset: int) -> MemoryPage:
        rows, total = await self.blocking(self.store.rows.page, owner, time.time(), limit, offset)
        return MemoryPage(memories=[item(row) for row in rows], total=total)

    async def get(self, owner: Owner, memory_id: str) -> MemoryItem:
        row = await self.blocking(self.store.rows.get, owner, memory_id, time.time())
        if row is None:
            raise not_found(f"memory {memory_id!r}: this user has no such memory", "id")
        return item(row)

    async def update(self, memory_id: str, request: UpdateMemory) -> MemoryItem:
        memory = await self.stored_text(request.text, "text") if request.text is not None else None
        expires_at = time.time() + request.ttl_s if request.ttl_s is not None else None
        row = await self.blocking(self.store.update, Owner(request.scope, request.user), memory_id, memory, expires_at)
        if row is None:
            raise not_found(f"memory {memory_id!r}: this user has no such memory", "id")
        metrics.OPERATIONS.labels(op="update").inc()
        return item(row)

    async def delete(self, owner: Owner, memory_id: str) -> int:
        if not await self.blocking(self.store.delete, owner, memory_id):
            raise not_found(f"memory {memory_id!r}: this user has no such memory", "id")
        metrics.OPERATIONS.labels(op="delete").inc()
        return 1

    async def delete_user(self, owner: Owner) -> int:
        deleted = await self.blocking(self.store.delete_owner, owner)
        metrics.OPERATIONS.labels(op="delete").inc(deleted)
        return deleted

    def job(self, owner: Owner, job_id: str) -> JobStatus:
        status = self.worker.status(owner, job_id)
        if status is None:
            raise not_found(f"job {job_id!r}: this user has no such extraction job (or it ended long ago)", "job_id")
        return status

    async def purge_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval_s)
            try:
                purged = await self.blocking(self.store.purge_expired)
                if purged:
                    logger.info("purged %d expired memories", purged)
            except DependencyDown as exc:
                logger.warning("purge of expired memories postponed: %s", exc)

"""The memory bento: long-term memories per user, pseudonymized, searchable by meaning, forgettable.

Start it with ``bentoml serve bentos.memory.service:Memory --host 127.0.0.1 --port 3006``. It reaches
Milvus (`RAGYARD_MILVUS__URI`, collection `RAGYARD_MEMORY__COLLECTION`), the state database (the
router's: SQLite under RAGYARD_HOME or `RAGYARD_ROUTER__STATE_URL`), and the embedder, safety and LLM
bentos. Routes under /v1/memories (`ragyard.contracts.memory`); BentoML adds /healthz, /readyz, /metrics.
Internal: callers name the scope and user, so only the router should reach it (a service credential
comes with issue 16). One worker: the extraction queue and its jobs' statuses live in the process.
"""

from __future__ import annotations

from typing import Annotated

import bentoml
from fastapi import FastAPI, Query
from starlette.responses import JSONResponse

from bentos.memory.memories import Memories
from bentos.memory.rows import Owner
from ragyard.contracts.memory import (
    SCOPE_PATTERN,
    USER_MAX_CHARS,
    AddMemory,
    AddResult,
    Deleted,
    JobStatus,
    MemoryItem,
    MemoryPage,
    SearchMemories,
    SearchResult,
    UpdateMemory,
)
from ragyard.kit.serving import serve_errors
from ragyard.settings import MemoryBentoSettings

rest_app = FastAPI(title="ragyard memory", docs_url=None, redoc_url=None)
Scope = Annotated[str, Query(pattern=SCOPE_PATTERN)]
User = Annotated[str, Query(min_length=1, max_length=USER_MAX_CHARS)]


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 60, "max_concurrency": 64}, workers=1)
@bentoml.asgi_app(rest_app, path="/v1")
class Memory:
    def __init__(self) -> None:
        self.memories = Memories(MemoryBentoSettings())

    @bentoml.on_startup
    async def start(self) -> None:
        await self.memories.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await self.memories.stop()

    def __is_ready__(self) -> bool:
        return self.memories.is_ready()

    @rest_app.post("/memories", response_model=AddResult, status_code=201)
    async def add(self, body: AddMemory) -> JSONResponse:
        """Add a memory (`text`: 201, or 200 when it duplicates one) or an exchange to extract from
        (`messages`: 202 with a job id); 200 `skipped` on an opt-out or nothing to extract."""
        status, result = await self.memories.add(body)
        return JSONResponse(result.model_dump(mode="json"), status_code=status)

    @rest_app.post("/memories/search", response_model=SearchResult)
    async def search(self, body: SearchMemories) -> SearchResult:
        """The user's memories nearest to the query, best first."""
        return await self.memories.search(body)

    @rest_app.get("/memories", response_model=MemoryPage)
    async def list_memories(
        self,
        scope: Scope,
        user: User,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> MemoryPage:
        """The user's memories, newest first; an unknown user has none."""
        return await self.memories.page(Owner(scope, user), limit, offset)

    @rest_app.get("/memories/jobs/{job_id}", response_model=JobStatus)
    async def job(self, job_id: str, scope: Scope, user: User) -> JobStatus:
        """What became of an exchange sent for extraction."""
        return self.memories.job(Owner(scope, user), job_id)

    @rest_app.get("/memories/{memory_id}", response_model=MemoryItem)
    async def get(self, memory_id: str, scope: Scope, user: User) -> MemoryItem:
        return await self.memories.get(Owner(scope, user), memory_id)

    @rest_app.patch("/memories/{memory_id}", response_model=MemoryItem)
    async def update(self, memory_id: str, body: UpdateMemory) -> MemoryItem:
        """A new text (pseudonymized and embedded again) and/or a new time to live."""
        return await self.memories.update(memory_id, body)

    @rest_app.delete("/memories/{memory_id}", response_model=Deleted)
    async def delete(self, memory_id: str, scope: Scope, user: User) -> Deleted:
        return Deleted(deleted=await self.memories.delete(Owner(scope, user), memory_id))

    @rest_app.delete("/memories", response_model=Deleted)
    async def delete_user(self, scope: Scope, user: User) -> Deleted:
        """Everything about the user: every vector in Milvus and every row in the database."""
        return Deleted(deleted=await self.memories.delete_user(Owner(scope, user)))


serve_errors(Memory, rest_app)

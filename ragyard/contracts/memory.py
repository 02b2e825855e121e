"""Wire schemas of the memory bento: the one place that defines its REST contract.

Every memory belongs to one `user` (the `user` field of an OpenAI request) within one `scope` (the
router passes its key's owner now; issue 16 makes it the tenant): nothing is ever read or written
across users or scopes. POST and PATCH bodies name them; GET and DELETE take them as query parameters.

    POST   /v1/memories                 add: `text` (stored as it is, pseudonymized) -> 201, or `messages`
                                        (an exchange to extract facts from, in the background) -> 202
    POST   /v1/memories/search          the user's memories nearest to `query` (dense, BM25 or hybrid)
    GET    /v1/memories                 list, newest first (`limit`, `offset`)
    GET    /v1/memories/{id}            one memory
    PATCH  /v1/memories/{id}            new `text` and/or `ttl_s`
    DELETE /v1/memories/{id}            one memory
    DELETE /v1/memories                 everything about the user: every vector and row
    GET    /v1/memories/jobs/{id}       what became of an exchange sent for extraction

Errors come in OpenAI's error shape (`ragyard.contracts.openai`), `param` naming the field: 400 a bad
field, 404 no such memory (or job) for this user, 413 a text or exchange over the bento's bounds, 422
a text the safety policy refuses (an injection, say), 503 a service it needs is down or its
extraction queue is full (with Retry-After). An unknown user is no error: it has no memories.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

SCOPE_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"
USER_MAX_CHARS = 256  # as the router's `user` field
SearchMode = Literal["dense", "bm25", "hybrid"]
Origin = Literal["text", "extraction"]  # added as such, or extracted from an exchange
JobState = Literal["queued", "running", "retrying", "done", "failed", "dropped"]


class Owned(BaseModel):
    scope: str = Field(pattern=SCOPE_PATTERN, description="Whose key (the tenant, with issue 16).")
    user: str = Field(min_length=1, max_length=USER_MAX_CHARS, description="The end user within the scope.")


class ExchangeMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class AddMemory(Owned):
    text: str | None = Field(default=None, min_length=1, description="A memory to store as it is.")
    messages: list[ExchangeMessage] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="An exchange: facts are extracted from its user turns (never from the assistant's).",
    )
    ttl_s: int | None = Field(default=None, ge=1, description="Time to live; the bento's default when absent.")
    at: float | None = Field(default=None, ge=0, description="When it was said (Unix seconds); now when absent.")
    opt_out: bool = Field(default=False, description="The user opted out: nothing is stored or extracted.")

    @model_validator(mode="after")
    def _text_or_messages(self) -> AddMemory:
        if (self.text is None) == (self.messages is None):
            raise ValueError("give either text (a memory) or messages (an exchange to extract from)")
        return self


class MemoryItem(BaseModel):
    id: str
    text: str = Field(description="Pseudonymized: PII appears as placeholders like <PERSON_3f2a9c1b>.")
    origin: Origin
    created_at: float
    updated_at: float
    expires_at: float | None = Field(description="Unix seconds; null: never.")


class AddResult(BaseModel):
    status: Literal["added", "duplicate", "queued", "skipped"]
    memory: MemoryItem | None = Field(default=None, description="added: the new memory; duplicate: the one kept.")
    job_id: str | None = Field(default=None, description="queued: the extraction job (GET /v1/memories/jobs/{id}).")
    evicted: list[str] = Field(
        default_factory=list,
        description="Ids of the least recently used memories removed to stay within the per-user bound.",
    )
    reason: str | None = Field(default=None, description="skipped: why nothing was stored or queued.")


class SearchMemories(Owned):
    query: str = Field(min_length=1)
    top_k: int = Field(default=5, ge=1, description="Bounded by the bento's max_top_k.")
    mode: SearchMode = "hybrid"


class MemoryHit(MemoryItem):
    score: float = Field(description="dense: cosine; bm25: BM25; hybrid: reciprocal-rank fusion. Higher is nearer.")


class SearchResult(BaseModel):
    memories: list[MemoryHit]


class MemoryPage(BaseModel):
    memories: list[MemoryItem]
    total: int


class UpdateMemory(Owned):
    text: str | None = Field(default=None, min_length=1)
    ttl_s: int | None = Field(default=None, ge=1, description="A new time to live, from now.")

    @model_validator(mode="after")
    def _something(self) -> UpdateMemory:
        if self.text is None and self.ttl_s is None:
            raise ValueError("give text, ttl_s or both")
        return self


class Deleted(BaseModel):
    deleted: int


class AppliedOperation(BaseModel):
    op: Literal["add", "update", "delete", "duplicate", "dropped"]
    memory_id: str | None = None
    text: str | None = None
    note: str | None = Field(
        default=None,
        description="Why an operation was changed or dropped (the similarity "
        "gate, an unknown id, an invented placeholder).",
    )


class JobStatus(BaseModel):
    id: str
    state: JobState
    attempts: int
    created_at: float
    finished_at: float | None = None
    error: str | None = Field(default=None, description="The last failure (retrying, failed, dropped).")
    operations: list[AppliedOperation] = Field(default_factory=list)

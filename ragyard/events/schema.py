"""The wire schema of every event on the broker: one pydantic model per event type.

An event travels as UTF-8 JSON with its `type` (also the routing key) and `id` (also the AMQP
message id, by which consumers drop duplicates). A body that does not validate against its model
is malformed: consumers dead-letter it with the reason, they never retry it. A change that old
consumers could not read bumps `schema_version` (and a consumer of both versions accepts both).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION: Final = 1
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
_TRACE_ID = r"^[0-9a-f]{32}$"


class MalformedEvent(ValueError):
    """A body that is not an event of a known type: not JSON, an unknown type, a missing or bad field."""


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    schema_version: Literal[1] = SCHEMA_VERSION
    occurred_at: float = Field(default_factory=time.time, ge=0)
    producer: str = Field(pattern=_NAME, description="The service that published it, e.g. router.")

    @property
    def routing_key(self) -> str:
        return self.type  # type: ignore[attr-defined]  # every concrete event has one


class FeedbackScored(Event):
    """A score on an answer (POST /v1/feedback): exported to Langfuse or MLflow, the learned router's data."""

    type: Literal["feedback.scored"] = "feedback.scored"
    trace_id: str = Field(pattern=_TRACE_ID)
    name: str = Field(pattern=_NAME)
    value: float = Field(ge=-1e6, le=1e6)
    comment: str | None = Field(default=None, max_length=2000)
    key_id: str | None = Field(default=None, max_length=64)


FlagReason = Literal["output_safety", "low_groundedness", "negative_feedback"]
MAX_UNSUPPORTED = 32


class AnswerFlagged(Event):
    """An answer for human review. What the router knew then travels with it (redacted as the policy
    redacts); a flag raised by feedback carries only the trace id and the score."""

    type: Literal["answer.flagged"] = "answer.flagged"
    trace_id: str = Field(pattern=_TRACE_ID)
    reason: FlagReason
    question: str | None = Field(default=None, max_length=100_000)
    answer: str | None = Field(default=None, max_length=200_000)
    citations: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    action: str | None = Field(default=None, max_length=16)  # the safety policy's: flag, block, ...
    categories: list[str] = Field(default_factory=list, max_length=32)  # safety findings: pii, toxicity, ...
    model: str | None = Field(default=None, max_length=256)
    route: dict[str, Any] | None = None
    # The index version the answer was given against (RAG with the caches on): what a pinned answer is for.
    index_version: str | None = Field(default=None, max_length=256)
    score: float | None = None  # the feedback value, or the groundedness
    # Claims of the answer found in none of its passages (numbers, names: ragyard/grounding.py).
    unsupported: list[str] = Field(default_factory=list, max_length=MAX_UNSUPPORTED)
    key_id: str | None = Field(default=None, max_length=64)


class DocumentChange(BaseModel):
    """Which file of a source folder changed, and how (also the body of the router's webhook)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(pattern=_NAME, description="The source's name (RAGYARD_INGEST__SOURCES).")
    path: str = Field(min_length=1, max_length=4096, description="Relative to the source folder, with /.")
    change: Literal["created", "modified", "deleted"] = "modified"

    @field_validator("path")
    @classmethod
    def _inside_the_source(cls, v: str) -> str:
        parts = v.split("/")
        if v.startswith("/") or "\\" in v or "\0" in v or any(p in ("", ".", "..") for p in parts):
            raise ValueError(
                "a relative path inside the source folder, with / between names, without '.', '..' or empty parts"
            )
        return v


class DocumentChanged(Event, DocumentChange):
    """A file of a source folder changed (a webhook said so): the ingestion indexes it now rather than
    at its next poll."""

    type: Literal["document.changed"] = "document.changed"


class JobUpdated(Event):
    """A long-running job (an ingest run, an agent task) moved to another state."""

    type: Literal["job.updated"] = "job.updated"
    job_id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    kind: str = Field(pattern=_NAME)
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    detail: dict[str, Any] = Field(default_factory=dict)


AnyEvent = Annotated[FeedbackScored | AnswerFlagged | DocumentChanged | JobUpdated, Field(discriminator="type")]
_ANY_EVENT: TypeAdapter[Event] = TypeAdapter(AnyEvent)
EVENT_TYPES: dict[str, type[Event]] = {
    model.model_fields["type"].default: model for model in (FeedbackScored, AnswerFlagged, DocumentChanged, JobUpdated)
}


def encode(event: Event) -> bytes:
    return event.model_dump_json().encode("utf-8")


def decode(body: bytes) -> Event:
    """The event in `body`; MalformedEvent says what is wrong with it."""
    try:
        return _ANY_EVENT.validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise MalformedEvent(problems) from None

"""Wire schemas of the retriever bento: the one place that defines its HTTP contract."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SearchMode = Literal["dense", "bm25", "hybrid"]


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, description="The question or keywords to search for.")
    top_k: int = Field(default=5, ge=1, description="Hits to return; at most the service's max_top_k.")
    mode: SearchMode = Field(default="hybrid", description="dense vectors, BM25 keywords, or both fused.")
    filter: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Metadata equality filters, ANDed: {field: value} or {field: [values]}; "
        "fields: doc_id, source, path, title, section.",
    )
    rerank: bool = Field(default=False, description="Rescore candidates with the configured cross-encoder.")


class Hit(BaseModel):
    chunk_id: str
    doc_id: str
    source: str
    title: str
    section: str
    text: str
    score: float


class Timings(BaseModel):
    embed_ms: float
    search_ms: float
    rerank_ms: float
    total_ms: float


class SearchResponse(BaseModel):
    hits: list[Hit]
    timings: Timings


class IndexInfo(BaseModel):
    """`GET /index`: the collection the retriever searches and what it holds."""

    collection: str
    content_version: str | None = Field(
        description="The ingestion's content version of what the collection holds, written after each run "
        "(it changes exactly when the indexed content does); null for a collection it never wrote."
    )
    rows: int = Field(ge=0, description="Chunks in the collection.")

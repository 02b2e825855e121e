"""Typed records that flow between the ingestion assets."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.ledger import FailedDocument, LedgerEntry


@dataclass(frozen=True)
class Section:
    headings: tuple[str, ...]  # the heading path, outermost first
    text: str


@dataclass(frozen=True)
class Document:
    doc_id: str
    source: str
    path: str  # path relative to its source folder
    title: str
    content_hash: str
    sections: tuple[Section, ...]
    size_bytes: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    source: str
    path: str
    title: str
    section: str
    position: int
    text: str
    content_hash: str


@dataclass(frozen=True)
class SkippedFile:
    source: str
    path: str
    reason: str
    failing_since: float = 0.0  # when a recorded failure was first seen (epoch seconds); 0: this run


def skipped(failure: FailedDocument) -> SkippedFile:
    return SkippedFile(failure.source, failure.path, failure.reason, failure.failed_at)


@dataclass
class DocumentDelta:
    """What changed in the sources since the index was last written."""

    changed: list[Document] = field(default_factory=list)  # new or modified, parsed
    deleted: list[str] = field(default_factory=list)  # doc ids gone from the sources
    unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    restat: list[LedgerEntry] = field(default_factory=list)  # touched but unchanged: new size/mtime only
    fingerprint: str = ""  # chunker + embedder settings the delta was computed for
    # Document versions known to fail (found now or recorded before): the ledger keeps exactly these.
    failed: list[FailedDocument] = field(default_factory=list)

    def skip_failed(self, failure: FailedDocument) -> None:
        self.failed.append(failure)
        self.skipped.append(skipped(failure))


def chunk_id(doc_id: str, position: int) -> str:
    """Stable: the same document and position always give the same id."""
    return f"{doc_id}#{position:05d}"


@dataclass
class ChunkedDelta:
    """The delta with each changed document cut into chunks (and, later, embedded)."""

    delta: DocumentDelta
    chunks: list[Chunk] = field(default_factory=list)  # grouped by document, in document order

    def entries(self) -> list[LedgerEntry]:
        counts: dict[str, int] = {}
        for chunk in self.chunks:
            counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
        return [
            LedgerEntry(
                d.doc_id,
                d.source,
                d.path,
                d.content_hash,
                self.delta.fingerprint,
                counts.get(d.doc_id, 0),
                d.size_bytes,
                d.mtime_ns,
            )
            for d in self.delta.changed
        ]

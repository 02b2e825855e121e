"""Find the documents in the configured source folders and work out what changed since the last run."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeGuard

from pipelines.documents import Document, DocumentDelta, SkippedFile
from pipelines.ledger import FailedDocument, LedgerEntry
from pipelines.parsing import parser_for
from pipelines.text import UnparsableFile, bom_codec
from ragyard import collection as col
from ragyard.embedding import vector_space
from ragyard.settings import ChunkerSettings, IngestionSettings, SourceSettings

# Bump when parsing or chunking changes in a way that should re-index every document.
PIPELINE_VERSION = 1
_BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SourceFile:
    source: str
    path: str  # relative to the source folder, with forward slashes
    abspath: Path
    size_bytes: int
    mtime_ns: int

    @property
    def doc_id(self) -> str:
        """Source and path; hashed (stably) when too long for the collection's id field, with room
        left for the chunk ids made from it."""
        return col.fit_id(f"{self.source}:{self.path}", col.DOC_ID_MAX_BYTES)


@dataclass(frozen=True)
class Scan:
    files: list[SourceFile]
    unavailable_sources: list[SkippedFile]  # folders that could not be listed: their documents stay


def settings_fingerprint(chunker: ChunkerSettings, vector_space: str, embedder_dim: int) -> str:
    """What a document's chunks and vectors depend on besides its own bytes; `vector_space` is the
    embedding model, with the backend if that is a quantized one (ragyard.embedding.vector_space)."""
    parts = {
        "pipeline": PIPELINE_VERSION,
        "chunker": chunker.model_dump(),
        "embedder": [vector_space, embedder_dim],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def configured_fingerprint(settings: IngestionSettings) -> str:
    """The fingerprint of the configured chunker and embedding."""
    embedder = settings.embedder
    return settings_fingerprint(settings.chunker, vector_space(embedder.model, embedder.backend), embedder.dim)


def _wanted(name: str, source: SourceSettings) -> bool:
    return not name.startswith(".") and any(fnmatch.fnmatch(name, p) for p in source.include)


def scan_sources(sources: list[SourceSettings]) -> Scan:
    files: list[SourceFile] = []
    unavailable: list[SkippedFile] = []
    for source in sources:
        if not source.path.is_dir():
            unavailable.append(SkippedFile(source.name, str(source.path), "source folder is missing or not a folder"))
            continue
        for folder, dirnames, filenames in os.walk(source.path, onerror=None):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not _wanted(name, source):
                    continue
                abspath = Path(folder) / name
                try:
                    stat = abspath.stat()
                except OSError:
                    stat = None  # read_document reports the reason
                files.append(
                    SourceFile(
                        source=source.name,
                        path=abspath.relative_to(source.path).as_posix(),
                        abspath=abspath,
                        size_bytes=stat.st_size if stat else -1,
                        mtime_ns=stat.st_mtime_ns if stat else -1,
                    )
                )
    return Scan(files, unavailable)


def read_bytes(file: SourceFile, max_bytes: int) -> bytes:
    if file.size_bytes > max_bytes:
        raise UnparsableFile(f"file is {file.size_bytes} bytes, above the limit of {max_bytes}")
    try:
        with open(file.abspath, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as e:
        raise UnparsableFile(f"unreadable: {e.strerror or e}") from e
    if len(data) > max_bytes:
        raise UnparsableFile(f"file grew above the limit of {max_bytes} bytes while being read")
    return data


def parse_document(file: SourceFile, data: bytes, content_hash: str) -> Document:
    parse = parser_for(file.path)
    if parse is None:
        raise UnparsableFile("no parser for this file type")
    if not data.strip():
        raise UnparsableFile("empty file")
    is_text = not file.path.lower().endswith(".pdf") and bom_codec(data) is None  # UTF-16 text has NULs
    if is_text and b"\x00" in data[:_BINARY_SNIFF_BYTES]:
        raise UnparsableFile("binary content (NUL bytes) in a text file")
    title, sections = parse(data)
    if not sections:
        raise UnparsableFile("no text left after parsing")
    return Document(
        doc_id=file.doc_id,
        source=file.source,
        path=file.path,
        title=title or Path(file.path).name,
        content_hash=content_hash,
        sections=tuple(sections),
        size_bytes=file.size_bytes,
        mtime_ns=file.mtime_ns,
    )


def is_current(entry: LedgerEntry | None, fingerprint: str) -> TypeGuard[LedgerEntry]:
    """The ledger holds this document under the present chunker and embedder settings."""
    return entry is not None and entry.fingerprint == fingerprint


def same_stat(entry: LedgerEntry | FailedDocument, file: SourceFile) -> bool:
    return (entry.size_bytes, entry.mtime_ns) == (file.size_bytes, file.mtime_ns)


def deleted_documents(scan: Scan, indexed: dict[str, LedgerEntry]) -> list[str]:
    """Indexed documents gone from their folder; a folder that cannot be listed keeps its documents."""
    present = {f.doc_id for f in scan.files}
    unavailable = {s.source for s in scan.unavailable_sources}
    return sorted(doc_id for doc_id, e in indexed.items() if doc_id not in present and e.source not in unavailable)


def known_failure(failed: dict[str, FailedDocument], file: SourceFile, fingerprint: str) -> FailedDocument | None:
    """The failure recorded for this file under the present settings, if any."""
    failure = failed.get(file.doc_id)
    return failure if failure is not None and failure.fingerprint == fingerprint else None


def _failure(file: SourceFile, content_hash: str, fingerprint: str, error: Exception) -> FailedDocument:
    # UnparsableFile says why; anything else is a parser's own failure on a file it was not made for.
    reason = str(error) if isinstance(error, UnparsableFile) else f"parser failed: {type(error).__name__}: {error}"
    return FailedDocument(
        file.doc_id,
        file.source,
        file.path,
        content_hash,
        fingerprint,
        file.size_bytes,
        file.mtime_ns,
        reason,
        time.time(),
    )


def compute_delta(
    scan: Scan,
    indexed: dict[str, LedgerEntry],
    fingerprint: str,
    max_bytes: int,
    rehash_all: bool = False,
    failed: dict[str, FailedDocument] | None = None,
    rehash: frozenset[str] = frozenset(),
) -> DocumentDelta:
    """New, changed and deleted documents. A file whose size and mtime match the ledger is taken
    as unchanged without reading it, unless `rehash_all` (the nightly run) asks to hash every file,
    or `rehash` names it ("source:path": a document.changed event said it changed).
    A file recorded in `failed` for the same content and settings is skipped with its reason."""
    failed = failed or {}
    delta = DocumentDelta(fingerprint=fingerprint, skipped=list(scan.unavailable_sources))
    for file in scan.files:
        entry = indexed.get(file.doc_id)
        current = entry if is_current(entry, fingerprint) else None
        trust_stat = not (rehash_all or f"{file.source}:{file.path}" in rehash)
        if current and same_stat(current, file) and trust_stat:
            delta.unchanged += 1
            continue
        failure = known_failure(failed, file, fingerprint)
        if failure and same_stat(failure, file) and trust_stat:
            delta.skip_failed(failure)
            continue
        try:
            data = read_bytes(file, max_bytes)
        except UnparsableFile as e:  # too large or unreadable: nothing to record a failure for
            delta.skipped.append(SkippedFile(file.source, file.path, str(e)))
            continue
        content_hash = hashlib.sha256(data).hexdigest()
        if current and current.content_hash == content_hash:
            delta.unchanged += 1  # touched, not changed
            delta.restat.append(replace(current, size_bytes=file.size_bytes, mtime_ns=file.mtime_ns))
        elif failure and failure.content_hash == content_hash:
            delta.skip_failed(replace(failure, size_bytes=file.size_bytes, mtime_ns=file.mtime_ns))
        else:
            try:
                delta.changed.append(parse_document(file, data, content_hash))
            except Exception as e:  # noqa: BLE001  one bad file never stops the run; an earlier version stays
                delta.skip_failed(_failure(file, content_hash, fingerprint, e))
    delta.deleted = deleted_documents(scan, indexed)
    return delta

"""An eval's own index: the configured settings pointed at a home and a collection of the eval's own, built
by the ingestion itself in this process (evals/backends.py: one per backend; evals/sqlite_answers.py: the
SQLite docs).

`ensure_index` runs the ingestion only
when the eval's ledger says a document is new, changed, touched or gone (or the collection is missing);
the ingestion is incremental by itself, this only spares a Dagster run when nothing changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.ledger import Ledger
from pipelines.materialize import materialize_ingest
from pipelines.sources import (
    configured_fingerprint,
    deleted_documents,
    is_current,
    known_failure,
    same_stat,
    scan_sources,
)
from ragyard import collection as col
from ragyard.settings import MilvusSettings, Settings, SourceSettings


def own_index_settings(
    settings: Settings, home: Path, collection: str, sources: list[SourceSettings], backend: str | None = None
) -> Settings:
    """The configured settings with a home and collection of their own (sharing the embedder's exports),
    indexing `sources` in this process, with `backend` if given."""
    models = str(settings.embedder.models_folder(settings.home))
    milvus = MilvusSettings(**{**settings.milvus.model_dump(), "collection": collection})
    return Settings(
        home=home,
        milvus=milvus,
        chunker=settings.chunker,
        retriever=settings.retriever,
        ingest=settings.ingest.model_copy(update={"sources": sources, "use_embedder_bento": False}),
        embedder=settings.embedder.model_copy(
            update={"backend": backend or settings.embedder.backend, "models_dir": models}
        ),
    )


def pending_documents(settings: Settings) -> int | None:
    """How many documents the ingestion would (re)index, re-stat or delete now, by the ledger alone (sizes
    and mtimes, no file read); None when the collection is missing (everything is to index)."""
    client = col.connect(settings.milvus.uri, settings.milvus.token, settings.milvus.timeout_s)
    if not client.has_collection(settings.milvus.collection):
        return None
    ledger = Ledger(settings.ledger_path)
    entries, failures = ledger.entries(), ledger.failures()
    fingerprint = configured_fingerprint(settings)
    scan = scan_sources(settings.ingest.sources)
    pending = len(deleted_documents(scan, entries))
    for file in scan.files:
        if file.size_bytes > settings.ingest.max_file_bytes:
            continue  # the ingestion skips it unread, and records nothing for it
        entry = entries.get(file.doc_id)
        if is_current(entry, fingerprint) and same_stat(entry, file):
            continue
        failure = known_failure(failures, file, fingerprint)
        if failure is None or not same_stat(failure, file):
            pending += 1
    return pending


@dataclass(frozen=True)
class OwnIndex:
    settings: Settings
    version: str  # the ledger's content version (evals.harness.index_version)
    documents: int
    chunks: int
    skipped_files: int  # files the ingestion could not index; their reasons are in the ledger
    rebuilt: bool  # whether the ingestion ran
    seconds: float


def ensure_index(settings: Settings) -> OwnIndex:
    """The index in `settings`, brought up to date by the ingestion when its ledger says the sources changed."""
    from evals.harness import index_version

    started = time.perf_counter()
    rebuilt = pending_documents(settings) != 0
    if rebuilt:
        materialize_ingest(settings)
    version, documents, chunks = index_version(settings)
    skipped = len(Ledger(settings.ledger_path).failures())
    return OwnIndex(settings, version, documents, chunks, skipped, rebuilt, time.perf_counter() - started)

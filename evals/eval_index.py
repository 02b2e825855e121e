"""An eval's own index: the configured settings pointed at a home and a collection of the eval's own, built
by the ingestion itself in this process (evals/backends.py: one per backend; evals/sqlite_answers.py: the
SQLite docs).

`ensure_index` runs the ingestion only
when the eval's ledger says a document is new, changed, touched or gone (or the collection is missing);
the ingestion is incremental by itself, this only spares a Dagster run when nothing changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.automation import pending_changes
from pipelines.ledger import Ledger
from pipelines.materialize import materialize_ingest
from pipelines.sources import scan_sources
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
    """How many documents the ingestion would (re)index or delete now, by the sensor's own stat scan
    against the ledger (`pending_changes`, no file read); None when the collection is missing
    (everything is to index)."""
    client = col.connect(settings.milvus.uri, settings.milvus.token, settings.milvus.timeout_s)
    if not client.has_collection(settings.milvus.collection):
        return None
    scan = scan_sources(settings.ingest.sources)
    # A file too large to read is skipped by the ingestion without a ledger row: never pending.
    readable = replace(scan, files=[f for f in scan.files if f.size_bytes <= settings.ingest.max_file_bytes])
    return sum(len(docs) for docs in pending_changes(settings, readable).values())


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

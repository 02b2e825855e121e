"""The ingestion assets: documents -> chunks -> embeddings -> vector_index (the Milvus collection)."""

import time
from collections import Counter

import dagster as dg
import numpy as np

from bentos.retriever import collection as col
from pipelines.chunking import chunk_document
from pipelines.documents import ChunkedDelta, DocumentDelta, SkippedFile, skipped
from pipelines.embedding import EmbeddingCheckpoint, embed_with_checkpoint
from pipelines.indexing import write_delta
from pipelines.resources import Embedder, PlatformSettings
from pipelines.sources import compute_delta, scan_sources, settings_fingerprint
from ragyard.dagster_client import PROGRESS_ASSET, Progress
from ragyard.settings import Settings

GROUP = "ingestion"
_SKIPPED_LISTED = 50
_SKIPPED_COLUMNS = ("source", "path", "reason", "failing_since")


def _skipped_metadata(files: list[SkippedFile]) -> dict:
    """How many files were skipped, by reason, and the first of them with their reasons."""
    rows = [
        dg.TableRecord({
            "source": s.source, "path": s.path, "reason": s.reason,
            "failing_since": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.failing_since)) if s.failing_since else "",
        })
        for s in files[:_SKIPPED_LISTED]
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in _SKIPPED_COLUMNS])
    return {
        "skipped_files": len(files),
        "skipped_reasons": dict(Counter(s.reason.split(":")[0] for s in files)),
        "skipped": dg.MetadataValue.table(rows, schema=schema),
    }


def ensure_collection(settings: Settings, client) -> bool:
    """The collection, created with the configured dense index if missing; True if created."""
    m = settings.milvus
    return col.ensure_collection(client, m.collection, settings.embedder.dim,
                                 col.dense_index(m.dense_index, m.dense_index_params))


class DocumentsConfig(dg.Config):
    # Hash every file instead of trusting an unchanged size and mtime (the nightly schedule sets it).
    rehash_all: bool = False


@dg.asset(
    group_name=GROUP,
    kinds={"python", "filesystem"},
    description="Documents from the source folders that are new or changed since the index was written, "
    "parsed into titled sections; documents gone from their folder; files skipped and why.",
)
def documents(
    context: dg.AssetExecutionContext, config: DocumentsConfig, platform: PlatformSettings
) -> dg.MaterializeResult:
    settings = platform.get()
    client = platform.milvus()
    ledger = platform.ledger()
    if ensure_collection(settings, client):
        if ledger.entries():
            context.log.warning("collection was missing: the ledger is cleared and every document re-indexed")
        ledger.clear()  # nothing is in a new collection, and no refusal of the old one holds
    started = time.perf_counter()
    scan = scan_sources(settings.ingest.sources)
    delta = compute_delta(scan, ledger.entries(), settings_fingerprint(settings), settings.ingest.max_file_bytes,
                          rehash_all=config.rehash_all, failed=ledger.failures())
    for file in delta.skipped:
        until = " (until the file changes)" if file.failing_since else ""
        context.log.warning(f"skipped {file.source}:{file.path}: {file.reason}{until}")
    return dg.MaterializeResult(
        value=delta,
        metadata={
            "files_seen": len(scan.files),
            "changed_documents": len(delta.changed),
            "unchanged_documents": delta.unchanged,
            "deleted_documents": len(delta.deleted),
            **_skipped_metadata(delta.skipped),
            "scan_seconds": round(time.perf_counter() - started, 3),
            "rehashed_all_files": config.rehash_all,
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"python"},
    description="Changed documents cut into structure-aware chunks with stable ids (document id + position).",
)
def chunks(platform: PlatformSettings, documents: DocumentDelta) -> dg.MaterializeResult:
    settings = platform.get().chunker
    chunked = ChunkedDelta(delta=documents)
    for document in documents.changed:
        chunked.chunks.extend(chunk_document(document, settings))
    lengths = [len(c.text) for c in chunked.chunks]
    return dg.MaterializeResult(
        value=chunked,
        metadata={
            "chunks": len(chunked.chunks),
            "documents": len(documents.changed),
            "mean_chars": round(float(np.mean(lengths)), 1) if lengths else 0.0,
            "max_chars": max(lengths, default=0),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pytorch"},
    description="Dense vectors for the new and changed chunks only, from the embedder's model. Checkpointed "
    "batch by batch (a failed or killed run resumes where it stopped); progress is observed after each batch.",
)
def embeddings(context: dg.AssetExecutionContext, platform: PlatformSettings, embedder: Embedder,
               chunks: ChunkedDelta) -> dg.MaterializeResult:
    settings = platform.get()
    checkpoint = EmbeddingCheckpoint.for_settings(settings)

    def report(progress: Progress) -> None:
        context.log.info(progress.describe())
        context.log_event(dg.AssetObservation(asset_key=PROGRESS_ASSET, metadata=progress.metadata()))

    vectors, done = embed_with_checkpoint([c.text for c in chunks.chunks], embedder.encode, checkpoint,
                                          embedder.checkpoint_batch(), report)
    return dg.MaterializeResult(
        value=(chunks, vectors),
        metadata={
            "embedded_chunks": len(chunks.chunks),
            "encoded_texts": done.encoded_texts,
            "checkpointed_chunks": done.checkpointed_chunks,
            "model": settings.embedder.model,
            "dim": int(vectors.shape[1]) if len(vectors) else settings.embedder.dim,
            "embed_seconds": round(done.seconds, 3),
            "chunks_per_second": round(done.encoded_texts / done.seconds, 1) if done.encoded_texts else 0.0,
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"milvus"},
    description="The Milvus collection: dense vectors, BM25 sparse vectors and chunk metadata. "
    "Changed documents are replaced, deleted ones removed, the ledger kept in step; a document Milvus "
    "refuses is skipped with its reason until its file changes.",
)
def vector_index(context: dg.AssetExecutionContext, platform: PlatformSettings,
                 embeddings: tuple[ChunkedDelta, np.ndarray]) -> dg.MaterializeResult:
    settings = platform.get()
    chunked, vectors = embeddings
    client = platform.milvus()
    ledger = platform.ledger()
    ensure_collection(settings, client)
    report = write_delta(
        client,
        settings.milvus.collection,
        ledger,
        chunked,
        vectors,
        batch_rows=settings.ingest.write_batch_rows,
        lock_path=settings.ledger_path.with_suffix(".lock"),
    )
    # Every vector made is now in the index or belongs to a document recorded as failed.
    EmbeddingCheckpoint.for_settings(settings).clear()
    for failure in report.failed:
        context.log.warning(f"skipped {failure.doc_id}: {failure.reason}")
    total = ledger.chunk_total()
    return dg.MaterializeResult(
        metadata={
            "embedded_chunks": report.upserted_chunks,
            "total_chunks": total,
            "embedded_summary": f"{report.upserted_chunks} of {total} chunks embedded",
            "removed_stale_chunks": report.removed_stale_chunks,
            "deleted_documents": report.deleted_documents,
            "deleted_chunks": report.deleted_chunks,
            "indexed_documents": len(ledger.entries()),
            "failed_documents": len(report.failed),
            **_skipped_metadata(chunked.delta.skipped + [skipped(f) for f in report.failed]),
            "collection": settings.milvus.collection,
            "milvus_uri": dg.MetadataValue.url(settings.milvus.uri),
        },
    )

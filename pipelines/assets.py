"""The ingestion assets: documents -> chunks -> embeddings -> vector_index (the Milvus collection)."""

import time
from collections import Counter

import dagster as dg
import numpy as np

from pipelines.chunking import chunk_document
from pipelines.documents import ChunkedDelta, DocumentDelta, SkippedFile, skipped
from pipelines.embedding import EmbeddingCheckpoint, embed_with_checkpoint
from pipelines.indexing import write_delta
from pipelines.resources import CorpusResource, EmbedderResource, LedgerResource, MilvusResource
from pipelines.sources import compute_delta, scan_sources, settings_fingerprint
from ragyard.dagster_client import PROGRESS_ASSET, Progress

GROUP = "ingestion"
_SKIPPED_LISTED = 50
_SKIPPED_COLUMNS = ("source", "path", "reason", "failing_since")


def _skipped_metadata(files: list[SkippedFile]) -> dict:
    """How many files were skipped, by reason, and the first of them with their reasons."""
    rows = [
        dg.TableRecord(
            {
                "source": s.source,
                "path": s.path,
                "reason": s.reason,
                "failing_since": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.failing_since))
                if s.failing_since
                else "",
            }
        )
        for s in files[:_SKIPPED_LISTED]
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in _SKIPPED_COLUMNS])
    return {
        "skipped_files": len(files),
        "skipped_reasons": dict(Counter(s.reason.split(":")[0] for s in files)),
        "skipped": dg.MetadataValue.table(rows, schema=schema),
    }


class DocumentsConfig(dg.Config):
    # Hash every file instead of trusting an unchanged size and mtime (the nightly schedule sets it).
    rehash_all: bool = False
    # Files ("source:path") to hash whatever their size and mtime: the document events' sensor sets it.
    rehash_paths: list[str] = []


@dg.asset(
    group_name=GROUP,
    kinds={"python", "filesystem"},
    description="Documents from the source folders that are new or changed since the index was written, "
    "parsed into titled sections; documents gone from their folder; files skipped and why.",
)
def documents(
    context: dg.AssetExecutionContext,
    config: DocumentsConfig,
    milvus: MilvusResource,
    ledger: LedgerResource,
    corpus: CorpusResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    client = milvus.client()
    book = ledger.ledger()
    if milvus.ensure_collection(client, embedder.dim):
        if book.entries():
            context.log.warning("collection was missing: the ledger is cleared and every document re-indexed")
        book.clear()  # nothing is in a new collection, and no refusal of the old one holds
    started = time.perf_counter()
    scan = scan_sources(corpus.source_settings())
    fingerprint = settings_fingerprint(corpus.chunker(), embedder.vector_space, embedder.dim)
    delta = compute_delta(
        scan,
        book.entries(),
        fingerprint,
        corpus.max_file_bytes,
        rehash_all=config.rehash_all,
        failed=book.failures(),
        rehash=frozenset(config.rehash_paths),
    )
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
def chunks(corpus: CorpusResource, documents: DocumentDelta) -> dg.MaterializeResult:
    chunker = corpus.chunker()
    chunked = ChunkedDelta(delta=documents)
    for document in documents.changed:
        chunked.chunks.extend(chunk_document(document, chunker))
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
def embeddings(
    context: dg.AssetExecutionContext, ledger: LedgerResource, embedder: EmbedderResource, chunks: ChunkedDelta
) -> dg.MaterializeResult:
    checkpoint = EmbeddingCheckpoint.beside(ledger.ledger_path, embedder.vector_space, embedder.dim)

    def report(progress: Progress) -> None:
        context.log.info(progress.describe())
        context.log_event(dg.AssetObservation(asset_key=PROGRESS_ASSET, metadata=progress.metadata()))

    vectors, done = embed_with_checkpoint(
        [c.text for c in chunks.chunks], embedder.encode, checkpoint, embedder.checkpoint_batch(), report
    )
    return dg.MaterializeResult(
        value=(chunks, vectors),
        metadata={
            "embedded_chunks": len(chunks.chunks),
            "encoded_texts": done.encoded_texts,
            "checkpointed_chunks": done.checkpointed_chunks,
            "model": embedder.model,
            "dim": int(vectors.shape[1]) if len(vectors) else embedder.dim,
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
def vector_index(
    context: dg.AssetExecutionContext,
    milvus: MilvusResource,
    ledger: LedgerResource,
    embedder: EmbedderResource,
    embeddings: tuple[ChunkedDelta, np.ndarray],
) -> dg.MaterializeResult:
    chunked, vectors = embeddings
    client = milvus.client()
    book = ledger.ledger()
    milvus.ensure_collection(client, embedder.dim)
    report = write_delta(
        client,
        milvus.collection,
        book,
        chunked,
        vectors,
        batch_rows=milvus.write_batch_rows,
        lock_path=ledger.lock_path,
    )
    # Every vector made is now in the index or belongs to a document recorded as failed.
    EmbeddingCheckpoint.beside(ledger.ledger_path, embedder.vector_space, embedder.dim).clear()
    for failure in report.failed:
        context.log.warning(f"skipped {failure.doc_id}: {failure.reason}")
    total = book.chunk_total()
    return dg.MaterializeResult(
        metadata={
            "embedded_chunks": report.upserted_chunks,
            "total_chunks": total,
            "embedded_summary": f"{report.upserted_chunks} of {total} chunks embedded",
            "removed_stale_chunks": report.removed_stale_chunks,
            "deleted_documents": report.deleted_documents,
            "deleted_chunks": report.deleted_chunks,
            "indexed_documents": len(book.entries()),
            "failed_documents": len(report.failed),
            **_skipped_metadata(chunked.delta.skipped + [skipped(f) for f in report.failed]),
            "collection": milvus.collection,
            "milvus_uri": dg.MetadataValue.url(milvus.uri),
        },
    )

"""The ingestion assets: documents -> chunks -> embeddings -> vector_index (the Milvus collection)."""

import time
from collections import Counter

import dagster as dg
import numpy as np

from ragyard import collection as col
from pipelines.chunking import chunk_document
from pipelines.documents import ChunkedDelta, DocumentDelta
from pipelines.indexing import write_delta
from pipelines.resources import CorpusResource, EmbedderResource, LedgerResource, MilvusResource
from pipelines.sources import compute_delta, scan_sources, settings_fingerprint

GROUP = "ingestion"
_SKIPPED_LISTED = 50


def _skipped_table(delta: DocumentDelta) -> dg.MetadataValue:
    rows = [
        dg.TableRecord({"source": s.source, "path": s.path, "reason": s.reason})
        for s in delta.skipped[:_SKIPPED_LISTED]
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, "string") for n in ("source", "path", "reason")])
    return dg.MetadataValue.table(rows, schema=schema)


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
    context: dg.AssetExecutionContext, config: DocumentsConfig, milvus: MilvusResource, ledger: LedgerResource,
    corpus: CorpusResource, embedder: EmbedderResource,
) -> dg.MaterializeResult:
    client = milvus.client()
    book = ledger.ledger()
    if milvus.ensure_collection(client, embedder.dim) and book.entries():
        context.log.warning("collection was missing: the ledger is cleared and every document re-indexed")
        book.clear()
    started = time.perf_counter()
    scan = scan_sources(corpus.source_settings())
    fingerprint = settings_fingerprint(corpus.chunker(), embedder.model, embedder.dim)
    delta = compute_delta(scan, book.entries(), fingerprint, corpus.max_file_bytes, rehash_all=config.rehash_all)
    for skipped in delta.skipped:
        context.log.warning(f"skipped {skipped.source}:{skipped.path}: {skipped.reason}")
    reasons = Counter(s.reason.split(":")[0] for s in delta.skipped)
    return dg.MaterializeResult(
        value=delta,
        metadata={
            "files_seen": len(scan.files),
            "changed_documents": len(delta.changed),
            "unchanged_documents": delta.unchanged,
            "deleted_documents": len(delta.deleted),
            "skipped_files": len(delta.skipped),
            "skipped_reasons": dict(reasons),
            "skipped": _skipped_table(delta),
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
    description="Dense vectors for the new and changed chunks only, from the embedder's model.",
)
def embeddings(embedder: EmbedderResource, chunks: ChunkedDelta) -> dg.MaterializeResult:
    started = time.perf_counter()
    vectors = embedder.encode([c.text for c in chunks.chunks])
    seconds = time.perf_counter() - started
    return dg.MaterializeResult(
        value=(chunks, vectors),
        metadata={
            "embedded_chunks": len(chunks.chunks),
            "model": embedder.model,
            "dim": int(vectors.shape[1]) if len(vectors) else embedder.dim,
            "embed_seconds": round(seconds, 3),
            "chunks_per_second": round(len(chunks.chunks) / seconds, 1) if chunks.chunks else 0.0,
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"milvus"},
    description="The Milvus collection: dense vectors, BM25 sparse vectors and chunk metadata. "
    "Changed documents are replaced, deleted ones removed, the ledger kept in step.",
)
def vector_index(milvus: MilvusResource, ledger: LedgerResource, embedder: EmbedderResource,
                 embeddings: tuple[ChunkedDelta, np.ndarray]) -> dg.MaterializeResult:
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
    total = book.chunk_total()
    return dg.MaterializeResult(
        metadata={
            "embedded_chunks": report.upserted_chunks,
            "total_chunks": total,
            "embedded_summary": f"{report.upserted_chunks} of {total} chunks embedded",
            "removed_stale_chunks": report.removed_stale_chunks,
            "deleted_documents": report.deleted_documents,
            "deleted_chunks": report.deleted_chunks,
            "skipped_files": len(chunked.delta.skipped),
            "collection": milvus.collection,
            "milvus_uri": dg.MetadataValue.url(milvus.uri),
        },
    )

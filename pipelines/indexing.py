"""Apply an embedded delta to the Milvus collection, keeping the ledger in step.

Order matters for readers and for crashes: a changed document's new chunks are upserted before
its surplus old chunks are deleted (a search never sees it missing), and the ledger row is
written last. Deleted documents lose their vectors first and their ledger rows after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from filelock import FileLock
from pymilvus import MilvusClient

from ragyard import collection as col
from pipelines.documents import Chunk, ChunkedDelta
from pipelines.ledger import Ledger, LedgerEntry

_DELETE_BATCH = 200


@dataclass(frozen=True)
class WriteReport:
    upserted_chunks: int
    removed_stale_chunks: int
    deleted_documents: int
    deleted_chunks: int


def _row(chunk: Chunk, vector: np.ndarray) -> dict:
    return {
        col.CHUNK_ID: chunk.chunk_id,
        col.DOC_ID: chunk.doc_id,
        col.SOURCE: chunk.source,
        col.PATH: chunk.path,
        col.TITLE: chunk.title,
        col.SECTION: chunk.section,
        col.POSITION: chunk.position,
        col.TEXT: chunk.text,
        col.CONTENT_HASH: chunk.content_hash,
        col.DENSE: vector.tolist(),
    }


def _document_batches(chunked: ChunkedDelta, batch_rows: int):
    """Yield (entries, first_row, end_row): whole documents, about batch_rows chunks at a time."""
    entries = chunked.entries()
    start = end = 0
    batch: list[LedgerEntry] = []
    for entry in entries:
        batch.append(entry)
        end += entry.chunk_count
        if end - start >= batch_rows:
            yield batch, start, end
            batch, start = [], end
    if batch:
        yield batch, start, end


def _stale_chunks_filter(entries: list[LedgerEntry]) -> str:
    return " or ".join(
        f"({col.DOC_ID} == {col.literal(e.doc_id)} and {col.POSITION} >= {e.chunk_count})" for e in entries
    )


def _count(client: MilvusClient, name: str, expression: str) -> int:
    rows = client.query(name, filter=expression, output_fields=["count(*)"])
    return int(rows[0]["count(*)"])


def write_delta(
    client: MilvusClient,
    collection_name: str,
    ledger: Ledger,
    chunked: ChunkedDelta,
    vectors: np.ndarray,
    batch_rows: int,
    lock_path,
) -> WriteReport:
    if len(chunked.chunks) != len(vectors):
        raise ValueError(f"{len(chunked.chunks)} chunks but {len(vectors)} vectors")
    upserted = stale = deleted_chunks = 0
    # One writer at a time: a sensor-launched run and a manual one must not interleave.
    with FileLock(str(lock_path), timeout=3600):
        try:
            for entries, first, end in _document_batches(chunked, batch_rows):
                rows = [_row(c, v) for c, v in zip(chunked.chunks[first:end], vectors[first:end])]
                client.upsert(collection_name, rows)
                upserted += len(rows)
                expression = _stale_chunks_filter(entries)
                stale += _count(client, collection_name, expression)
                client.delete(collection_name, filter=expression)
                ledger.record(entries)
            for i in range(0, len(chunked.delta.deleted), _DELETE_BATCH):
                doc_ids = chunked.delta.deleted[i : i + _DELETE_BATCH]
                expression = col.in_list(col.DOC_ID, doc_ids)
                deleted_chunks += _count(client, collection_name, expression)
                client.delete(collection_name, filter=expression)
                ledger.forget(doc_ids)
            ledger.record(chunked.delta.restat)
            if upserted or deleted_chunks or stale:
                # milvus-lite searches unflushed rows row by row and rebuilds their BM25 index per query:
                # on the Python docs, 0.5 s (dense) and 2 s (BM25) a search before a flush, ~45 ms after.
                client.flush(collection_name)
        finally:
            # Every run, failed ones too (their finished batches are in the ledger and the collection),
            # and collections written before versions existed: the router's cache keys on it.
            col.set_content_version(client, collection_name, ledger.content_version())
    return WriteReport(upserted, stale, len(chunked.delta.deleted), deleted_chunks)

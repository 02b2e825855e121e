"""Apply an embedded delta to the Milvus collection, keeping the ledger in step.

Order matters for readers and for crashes: a changed document's new chunks are upserted before
its surplus old chunks are deleted (a search never sees it missing), and the ledger row is
written last. Deleted documents lose their vectors first and their ledger rows after.

One document Milvus refuses does not cost the others: a refused batch is written again document
by document, and the documents refused on their own are recorded as failed, with Milvus's reason
(their earlier version, if any, stays indexed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from filelock import FileLock
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from pipelines.documents import Chunk, ChunkedDelta
from pipelines.ledger import FailedDocument, Ledger, LedgerEntry
from ragyard import collection as col

_DELETE_BATCH = 200


@dataclass(frozen=True)
class WriteReport:
    upserted_chunks: int
    removed_stale_chunks: int
    deleted_documents: int
    deleted_chunks: int
    failed: tuple[FailedDocument, ...] = ()  # documents Milvus refused on their own


def _row(chunk: Chunk, vector: np.ndarray) -> dict:
    # Labels are cut to their fields' limits; ids and texts were made to fit by their makers.
    return col.fit_labels(
        {
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
    )


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


def _answers(client: MilvusClient, name: str) -> bool:
    try:
        client.has_collection(name)
        return True
    except MilvusException:
        return False


def _upsert_documents(
    client: MilvusClient, name: str, entries: list[LedgerEntry], rows: list[dict]
) -> tuple[list[LedgerEntry], list[FailedDocument]]:
    """Upsert whole documents' rows; (the documents written, the documents Milvus refused)."""
    try:
        client.upsert(name, rows)
        return entries, []
    except MilvusException:
        pass  # some document of the batch, or the server: find out one document at a time
    written, failed, start = [], [], 0
    for entry in entries:
        document_rows, start = rows[start : start + entry.chunk_count], start + entry.chunk_count
        try:
            client.upsert(name, document_rows)
            written.append(entry)
        except MilvusException as error:
            if not _answers(client, name):
                raise  # the server is gone, not the document: the run fails, the next resumes
            failed.append(
                FailedDocument(
                    entry.doc_id,
                    entry.source,
                    entry.path,
                    entry.content_hash,
                    entry.fingerprint,
                    entry.size_bytes,
                    entry.mtime_ns,
                    f"Milvus refused the document: {error.message}",
                    time.time(),
                )
            )
    return written, failed


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
    failed: list[FailedDocument] = []
    # One writer at a time: a sensor-launched run and a manual one must not interleave.
    with FileLock(str(lock_path), timeout=3600):
        try:
            for entries, first, end in _document_batches(chunked, batch_rows):
                rows = [_row(c, v) for c, v in zip(chunked.chunks[first:end], vectors[first:end], strict=True)]
                written, refused = _upsert_documents(client, collection_name, entries, rows)
                failed += refused
                if not written:
                    continue
                upserted += sum(e.chunk_count for e in written)
                expression = _stale_chunks_filter(written)
                stale += _count(client, collection_name, expression)
                client.delete(collection_name, filter=expression)
                ledger.record(written)
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
            ledger.replace_failures(chunked.delta.failed + failed)
            # Every run, failed ones too (their finished batches are in the ledger and the collection),
            # and collections written before versions existed: the router's cache keys on it.
            col.set_content_version(client, collection_name, ledger.content_version())
    return WriteReport(upserted, stale, len(chunked.delta.deleted), deleted_chunks, tuple(failed))

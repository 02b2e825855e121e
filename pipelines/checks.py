"""Asset checks that guard the vector index against drift from the ledger."""

from collections import Counter

import dagster as dg

from pipelines.assets import vector_index
from pipelines.resources import EmbedderResource, LedgerResource, MilvusResource
from ragyard import collection as col

_EXAMPLES = 10


@dg.asset_check(asset=vector_index, description="Milvus holds exactly as many rows as the ledger has chunks.")
def row_count_matches_ledger(milvus: MilvusResource, ledger: LedgerResource) -> dg.AssetCheckResult:
    rows = col.row_count(milvus.client(), milvus.collection)
    expected = ledger.ledger().chunk_total()
    return dg.AssetCheckResult(passed=rows == expected, metadata={"milvus_rows": rows, "ledger_chunks": expected})


@dg.asset_check(
    asset=vector_index,
    description="Every vector belongs to a document version in the ledger, at a position it has, "
    "and every ledger document has all its chunks.",
)
def no_orphan_vectors(milvus: MilvusResource, ledger: LedgerResource) -> dg.AssetCheckResult:
    entries = ledger.ledger().entries()
    client = milvus.client()
    iterator = client.query_iterator(
        milvus.collection,
        batch_size=2000,
        filter="",
        output_fields=[col.CHUNK_ID, col.DOC_ID, col.POSITION, col.CONTENT_HASH],
    )
    orphans: list[str] = []
    per_document: Counter[str] = Counter()
    try:
        while batch := iterator.next():
            for row in batch:
                entry = entries.get(row[col.DOC_ID])
                if (
                    entry is None
                    or entry.content_hash != row[col.CONTENT_HASH]
                    or row[col.POSITION] >= entry.chunk_count
                ):
                    orphans.append(row[col.CHUNK_ID])
                else:
                    per_document[row[col.DOC_ID]] += 1
    finally:
        iterator.close()
    incomplete = sorted(d for d, e in entries.items() if per_document[d] != e.chunk_count)
    return dg.AssetCheckResult(
        passed=not orphans and not incomplete,
        metadata={
            "orphan_vectors": len(orphans),
            "orphan_examples": orphans[:_EXAMPLES],
            "incomplete_documents": len(incomplete),
            "incomplete_examples": incomplete[:_EXAMPLES],
        },
    )


@dg.asset_check(asset=vector_index, description="The collection's vectors have the configured embedding dimension.")
def embedding_dimension(milvus: MilvusResource, embedder: EmbedderResource) -> dg.AssetCheckResult:
    dim = col.collection_dim(milvus.client(), milvus.collection)
    return dg.AssetCheckResult(
        passed=dim == embedder.dim, metadata={"collection_dim": dim, "configured_dim": embedder.dim}
    )


INDEX_CHECKS = [row_count_matches_ledger, no_orphan_vectors, embedding_dimension]

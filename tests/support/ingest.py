"""Helpers for the ingestion tests: what a run reported, and what the collection holds."""

from ragyard import collection as col
from pipelines.materialize import asset_metadata

ALL_CHECKS = {"row_count_matches_ledger": True, "no_orphan_vectors": True, "embedding_dimension": True}


def skipped_reasons(result, asset: str = "vector_index") -> dict[str, str]:
    """{path: reason} of the files an asset's metadata lists as skipped."""
    table = asset_metadata(result, asset)["skipped"]
    return {r.data["path"]: r.data["reason"] for r in table.records}


def progress_observations(result) -> list[dict]:
    """The embedding progress a run reported, in order."""
    return [{k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()}
            for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]


def document_rows(settings, doc_id: str,
                  fields=(col.CHUNK_ID, col.TEXT, col.POSITION, col.TITLE, col.PATH, col.CONTENT_HASH)):
    rows = col.connect(settings.milvus.uri).query(
        settings.milvus.collection, filter=f"{col.DOC_ID} == {col.literal(doc_id)}", output_fields=list(fields))
    return sorted(rows, key=lambda r: r[col.POSITION])

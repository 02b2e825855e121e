"""Helpers for the ingestion tests: run it, what a run reported, and what the collection holds."""

import uuid
from pathlib import Path
from typing import Any

from dagster import ExecuteInProcessResult

from pipelines.materialize import asset_metadata, materialize_ingest
from ragyard import collection as col
from ragyard.settings import ChunkerSettings, IngestSettings, MilvusSettings, Settings, SourceSettings
from tests.support.corpus import write_corpus


def corpus_settings(home: Path, milvus_uri: str, corpus: Path, **groups: Any) -> Settings:
    """Settings under `home` that index `corpus` (source "docs") into a collection of their own on the
    milvus-lite server at `milvus_uri`, in small chunks; `groups` replace more of them."""
    return Settings(
        home=home,
        milvus=MilvusSettings(uri=milvus_uri, collection=f"t_{uuid.uuid4().hex[:12]}"),
        ingest=IngestSettings(sources=[SourceSettings(name="docs", path=corpus)], write_batch_rows=16),
        chunker=ChunkerSettings(max_chars=600, overlap_chars=100, min_chars=150),
        **groups,
    )


ALL_CHECKS = {"row_count_matches_ledger": True, "no_orphan_vectors": True, "embedding_dimension": True}


def indexed_corpus(root: Path, milvus_uri: str, count: int = 6, **groups: Any) -> Settings:
    """The test corpus (`count` documents) written to <root>/corpus and ingested: settings under <root>/home
    that index it (see `corpus_settings`)."""
    corpus = root / "corpus"
    corpus.mkdir()
    write_corpus(corpus, count=count)
    settings = corpus_settings(root / "home", milvus_uri, corpus, **groups)
    run_ingest(settings)
    return settings


def run_ingest(settings: Settings, run_config: dict[str, Any] | None = None) -> ExecuteInProcessResult:
    """Materialize the ingestion in this process; it must succeed."""
    result = materialize_ingest(settings, run_config=run_config)
    assert result.success
    return result


def index_metadata(result: ExecuteInProcessResult) -> dict[str, Any]:
    return asset_metadata(result, "vector_index")


def skipped_reasons(result: ExecuteInProcessResult, asset: str = "vector_index") -> dict[str, str]:
    """{path: reason} of the files an asset's metadata lists as skipped."""
    table = asset_metadata(result, asset)["skipped"]
    return {r.data["path"]: r.data["reason"] for r in table.records}


def progress_observations(result: ExecuteInProcessResult) -> list[dict[str, Any]]:
    """The embedding progress a run reported, in order."""
    return [
        {k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()}
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]


def document_rows(
    settings: Settings,
    doc_id: str,
    fields: tuple[str, ...] = (col.CHUNK_ID, col.TEXT, col.POSITION, col.TITLE, col.PATH, col.CONTENT_HASH),
) -> list[dict[str, Any]]:
    rows = col.connect(settings.milvus.uri).query(
        settings.milvus.collection, filter=f"{col.DOC_ID} == {col.literal(doc_id)}", output_fields=list(fields)
    )
    return sorted(rows, key=lambda r: r[col.POSITION])

"""The ingestion's typed Dagster resources, built once from the settings its code location parsed."""

import dagster as dg

from pipelines.definitions import defs
from pipelines.resources import MilvusResource, ingest_resources
from ragyard.settings import IngestionSettings


def test_the_resources_carry_the_settings_of_their_concern(monkeypatch, tmp_path):
    monkeypatch.setenv("RAGYARD_HOME", str(tmp_path))
    monkeypatch.setenv("RAGYARD_INGEST__SOURCES", f'[{{"name": "notes", "path": "{tmp_path}"}}]')
    monkeypatch.setenv("RAGYARD_CHUNKER__MAX_CHARS", "900")
    monkeypatch.setenv("RAGYARD_INGEST__USE_EMBEDDER_BENTO", "true")
    resources = ingest_resources(IngestionSettings())
    assert resources["ledger"].ledger().path == tmp_path / "ingest" / "ledger.sqlite3"
    assert [(s.name, s.path) for s in resources["corpus"].source_settings()] == [("notes", tmp_path)]
    assert resources["corpus"].chunker().max_chars == 900
    assert resources["embedder"].use_bento and resources["embedder"].url == "http://127.0.0.1:3001"
    assert set(defs.resources) == set(resources)  # what the code location serves


def test_the_milvus_token_is_read_at_run_time_and_never_stored_in_the_config(monkeypatch):
    monkeypatch.setenv("RAGYARD_MILVUS__TOKEN", "root:s3cret")
    milvus = ingest_resources(IngestionSettings())["milvus"]
    # Dagster's config (shown in the UI, stored with runs) holds the variable's name, not its value.
    assert isinstance(milvus.token, dg.EnvVar) and milvus.token == "RAGYARD_MILVUS__TOKEN"
    seen = {}

    @dg.asset
    def uses_milvus(milvus: MilvusResource) -> None:
        seen["token"] = milvus.token

    assert dg.materialize([uses_milvus], resources={"milvus": milvus}).success
    assert seen["token"] == "root:s3cret"

"""Run the ingest assets and checks in this process, with real resources (benchmarks, tests)."""

import dagster as dg

from pipelines.assets import chunks, documents, embeddings, vector_index
from pipelines.checks import INDEX_CHECKS
from pipelines.resources import ingest_resources
from ragyard.settings import IngestionSettings


def materialize_ingest(
    settings: IngestionSettings, instance: dg.DagsterInstance | None = None, run_config: dict | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [documents, chunks, embeddings, vector_index, *INDEX_CHECKS],
        resources=ingest_resources(settings),
        instance=instance or dg.DagsterInstance.ephemeral(),
        run_config=run_config,
        raise_on_error=True,
    )


def asset_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """One asset's materialization metadata as plain values."""
    [event] = [
        e for e in result.get_asset_materialization_events() if e.asset_key is not None and e.asset_key.path == [asset]
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def check_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

"""The ingestion's Dagster code location `ragyard-pipelines` (workspace.yaml; the evals have their own,
evals/definitions.py)."""

import dagster as dg

from pipelines.assets import chunks, documents, embeddings, vector_index
from pipelines.automation import ingest_job, make_nightly_schedule, make_source_sensor
from pipelines.checks import INDEX_CHECKS
from pipelines.document_events import make_document_events_sensor
from pipelines.resources import ingest_resources
from ragyard.settings import IngestionSettings

# Parsed once per process (the code server, and each run's): only the ingestion's groups.
_settings = IngestionSettings()

defs = dg.Definitions(
    assets=[documents, chunks, embeddings, vector_index],
    asset_checks=INDEX_CHECKS,
    jobs=[ingest_job],
    # The event sensor reacts at once to the router's webhook; the polling one stays as the fallback.
    sensors=[make_document_events_sensor(_settings), make_source_sensor(_settings)],
    schedules=[make_nightly_schedule(_settings)],
    resources=ingest_resources(_settings),
    # Ingestion steps run in sequence; one process loads the code and the model once.
    executor=dg.in_process_executor,
)

"""What starts ingestion: a sensor on the source folders, a nightly schedule, and the job they run."""

import hashlib

import dagster as dg

from pipelines.assets import chunks, documents, embeddings, vector_index
from pipelines.checks import INDEX_CHECKS
from pipelines.ledger import Ledger
from pipelines.sources import (
    Scan,
    configured_fingerprint,
    deleted_documents,
    is_current,
    known_failure,
    same_stat,
    scan_sources,
)
from ragyard.settings import IngestionSettings

INGEST_CONCURRENCY_TAG = "ragyard/ingest"
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.assets(documents, chunks, embeddings, vector_index)
    | dg.AssetSelection.checks(*INDEX_CHECKS),
    description="Bring the vector index up to date with the source folders.",
    # Steps run in sequence anyway; one process spares loading the code and the model four times.
    executor_def=dg.in_process_executor,
    tags={INGEST_CONCURRENCY_TAG: "index"},
)


def pending_changes(settings: IngestionSettings, scan: Scan) -> dict[str, list[str]]:
    """Files new, changed (size or mtime) or deleted relative to the ledger, by a cheap stat scan.
    A file recorded as failing is not pending until it changes: it would fail again."""
    ledger = Ledger(settings.ledger_path)
    indexed, failed = ledger.entries(), ledger.failures()
    fingerprint = configured_fingerprint(settings)
    new, changed = [], []
    for file in scan.files:
        entry, failure = indexed.get(file.doc_id), known_failure(failed, file, fingerprint)
        if failure and same_stat(failure, file):
            continue
        if entry is None:
            new.append(file.doc_id)
        elif not (is_current(entry, fingerprint) and same_stat(entry, file)):
            changed.append(file.doc_id)
    return {"new": new, "changed": changed, "deleted": deleted_documents(scan, indexed)}


def _run_key(scan: Scan, changes: dict[str, list[str]]) -> str:
    # The same pending state yields the same run key, so Dagster launches it once: a file that is
    # skipped as bad on every run does not trigger a run on every tick.
    stats = {f.doc_id: (f.size_bytes, f.mtime_ns) for f in scan.files}
    described = sorted((kind, d, stats.get(d)) for kind, ids in changes.items() for d in ids)
    return hashlib.sha256(repr(described).encode()).hexdigest()[:24]


def make_source_sensor(settings: IngestionSettings) -> dg.SensorDefinition:
    @dg.sensor(
        job=ingest_job,
        minimum_interval_seconds=settings.ingest.sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts ingestion when files in the source folders are added, changed or deleted.",
    )
    def source_files_sensor(context: dg.SensorEvaluationContext):
        if context.instance.get_runs_count(dg.RunsFilter(job_name=ingest_job.name, statuses=_ACTIVE)):
            # The running one will see these changes (or the next tick will); don't pile up runs.
            return dg.SkipReason("an ingest run is queued or in progress")
        scan = scan_sources(settings.ingest.sources)
        changes = pending_changes(settings, scan)
        if not any(changes.values()):
            return dg.SkipReason("source folders match the index")
        counts = {kind: len(ids) for kind, ids in changes.items()}
        context.log.info(f"pending changes: {counts}")
        return dg.RunRequest(
            run_key=_run_key(scan, changes),
            tags={f"ragyard/{kind}_files": str(n) for kind, n in counts.items()},
        )

    return source_files_sensor


def make_nightly_schedule(settings: IngestionSettings) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="nightly_ingest",
        job=ingest_job,
        cron_schedule=settings.ingest.schedule_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        run_config={"ops": {"documents": {"config": {"rehash_all": True}}}},
        description="A pass that hashes every file, catching edits a stat scan cannot see (same size and mtime).",
    )

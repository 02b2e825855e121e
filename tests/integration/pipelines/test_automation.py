"""The sensor notices new, changed and deleted files; the job and schedule are wired to the assets."""

import os

import dagster as dg

from pipelines.automation import (
    make_nightly_schedule,
    make_source_sensor,
    pending_changes,
)
from pipelines.sources import scan_sources
from ragyard.settings import settings_env
from tests.support.corpus import write_corpus
from tests.support.ingest import run_ingest


def _evaluate(sensor, cursor=None):
    with dg.DagsterInstance.ephemeral() as instance:
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor))


def test_sensor_requests_a_run_for_new_changed_and_deleted_files(settings, corpus, monkeypatch):
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    paths = write_corpus(corpus, count=3)
    sensor = make_source_sensor(settings)

    first = _evaluate(sensor)
    assert len(first.run_requests) == 1
    assert first.run_requests[0].tags["ragyard/new_files"] == "4"

    run_ingest(settings)
    idle = _evaluate(sensor)
    assert idle.run_requests == [] and "match the index" in idle.skip_message

    paths[0].write_text(paths[0].read_text() + "\nOne more paragraph.\n")
    os.utime(paths[0], ns=(10**18, 10**18))
    paths[1].unlink()
    (corpus / "new.md").write_text("# New\n\nA new page.\n")
    pending = pending_changes(settings, scan_sources(settings.ingest.sources))
    assert {k: len(v) for k, v in pending.items()} == {"new": 1, "changed": 1, "deleted": 1}
    changed = _evaluate(sensor)
    [request] = changed.run_requests
    assert {k: v for k, v in request.tags.items() if k.startswith("ragyard/")} == {
        "ragyard/new_files": "1",
        "ragyard/changed_files": "1",
        "ragyard/deleted_files": "1",
    }
    # The same pending state gives the same run key: Dagster launches it once.
    assert _evaluate(sensor).run_requests[0].run_key == request.run_key


def test_job_and_schedule_target_the_ingestion_assets(settings):
    import pipelines.definitions as location

    job = location.defs.resolve_job_def("ingest")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "documents",
        "chunks",
        "embeddings",
        "vector_index",
    }
    schedule = make_nightly_schedule(settings)
    assert schedule.cron_schedule == settings.ingest.schedule_cron and schedule.job_name == "ingest"


def test_sensor_waits_while_an_ingest_run_is_in_progress(settings, corpus, monkeypatch):
    from dagster._core.storage.dagster_run import DagsterRun

    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    write_corpus(corpus, count=1)
    sensor = make_source_sensor(settings)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_run(DagsterRun(job_name="ingest", run_id="started-run", status=dg.DagsterRunStatus.STARTED))
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert result.run_requests == [] and "queued or in progress" in result.skip_message

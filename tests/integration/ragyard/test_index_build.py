"""`python -m ragyard run` builds the index through the running Dagster and shows its progress,
read from the run's event log over Dagster's GraphQL API."""

import io
import re
import time
import uuid

from dagster import DagsterInstance, DagsterRun, DagsterRunStatus
from rich.console import Console

from pipelines.ledger import Ledger
from ragyard.dagster_client import active_ingest_runs, cancel_orphaned_runs, index_summary, run_progress
from ragyard.index_build import build_index
from ragyard.services import dagster_spec, prepare_dagster_home
from ragyard.settings import DagsterSettings
from tests.support.corpus import write_corpus
from tests.support.network import free_port
from tests.support.stack import Stack


def _wait_for_a_sensor_run(settings, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not active_ingest_runs(settings):  # a run takes far longer than a poll to finish
        assert time.monotonic() < deadline, "the sensor requested no ingest run"
        time.sleep(0.5)


def test_build_index_follows_the_run_under_way_with_progress_then_its_own(settings, corpus, monkeypatch):
    """As on `make run`'s first start: the sensor sees the new files and starts a run before ours. And
    after a killed platform: a run it left STARTED (its worker died with that platform's Dagster) would
    be followed until the timeout and keeps the sensor from starting any; the start marks it canceled."""
    write_corpus(corpus)
    settings.embedder.batch_size = 4
    settings.dagster = DagsterSettings(port=free_port())
    monkeypatch.setenv("DAGSTER_HOME", str(prepare_dagster_home(settings)))
    with DagsterInstance.get() as instance:
        orphan = instance.add_run(
            DagsterRun(job_name="ingest", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED)
        )
    platform_started = time.time()
    out = io.StringIO()
    with Stack(settings.home) as stack:
        stack.start(dagster_spec(settings))
        assert orphan.run_id in active_ingest_runs(settings)
        assert cancel_orphaned_runs(settings, platform_started) == [orphan.run_id]
        assert orphan.run_id not in active_ingest_runs(settings)
        _wait_for_a_sensor_run(settings)
        console = Console(file=out, width=200)
        assert build_index(settings, timeout_s=600, console=console, platform_started=platform_started)
        with DagsterInstance.get() as instance:
            left = instance.get_run_by_id(orphan.run_id)
            assert left is not None and left.status == DagsterRunStatus.CANCELED
        printed = out.getvalue()
        sensor_run, own_run = re.findall(r"/runs/([0-9a-f-]{36})", printed)
        chunks = Ledger(settings.ledger_path).chunk_total()
        progress = run_progress(settings, sensor_run)
        assert (progress.done, progress.total) == (chunks, chunks) and progress.rate_per_s > 0
        assert run_progress(settings, own_run) is None  # nothing left to embed
        assert index_summary(settings, own_run)["total_chunks"] == chunks
    assert f"embedded {chunks:,} chunks" in printed and "no chunks to embed" in printed
    assert f"index ready: {chunks:,} chunks from 7 documents" in printed

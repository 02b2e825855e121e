"""`python -m ragyard run` builds the index through the running Dagster and shows its progress,
read from the run's event log over Dagster's GraphQL API."""

import io
import re
import time
import uuid

from rich.console import Console

from pipelines.ledger import Ledger
from ragyard.dagster_client import active_ingest_runs, index_summary, run_progress
from ragyard.index_build import build_index
from ragyard.services import dagster_spec
from ragyard.settings import DagsterSettings
from tests.support.corpus import write_corpus
from tests.support.network import free_port
from tests.support.stack import Stack


def _wait_for_a_sensor_run(settings, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not active_ingest_runs(settings):  # a run takes far longer than a poll to finish
        assert time.monotonic() < deadline, "the sensor requested no ingest run"
        time.sleep(0.5)


def test_build_index_follows_the_run_under_way_with_progress_then_its_own(settings, corpus):
    """As on `make run`'s first start: the sensor sees the new files and starts a run before ours."""
    write_corpus(corpus)
    settings.embedder.batch_size = 4
    settings.dagster = DagsterSettings(port=free_port())
    out = io.StringIO()
    with Stack(settings.home) as stack:
        stack.start(dagster_spec(settings))
        _wait_for_a_sensor_run(settings)
        assert build_index(settings, timeout_s=600, console=Console(file=out, width=200))
        printed = out.getvalue()
        sensor_run, own_run = re.findall(r"/runs/([0-9a-f-]{36})", printed)
        chunks = Ledger(settings.ledger_path).chunk_total()
        progress = run_progress(settings, sensor_run)
        assert (progress.done, progress.total) == (chunks, chunks) and progress.rate_per_s > 0
        assert run_progress(settings, own_run) is None  # nothing left to embed
        assert index_summary(settings, own_run)["total_chunks"] == chunks
    assert f"embedded {chunks:,} chunks" in printed and "no chunks to embed" in printed
    assert f"index ready: {chunks:,} chunks from 7 documents" in printed


def test_a_run_a_killed_platform_left_under_way_is_marked_canceled_not_followed(settings, corpus, monkeypatch):
    """A run left STARTED (its worker died with the killed platform's Dagster) would be followed until
    the timeout, and keeps the sensor from starting any: the next start marks it canceled first."""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    from ragyard.services import prepare_dagster_home

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
        built = build_index(settings, 600, Console(file=out, width=200), platform_started=platform_started)
        assert built and orphan.run_id not in active_ingest_runs(settings)
    with DagsterInstance.get() as instance:
        left = instance.get_run_by_id(orphan.run_id)
        assert left is not None and left.status == DagsterRunStatus.CANCELED
    printed = out.getvalue()
    assert f"/runs/{orphan.run_id} marked canceled" in printed
    assert re.search(r"index ready: [\d,]+ chunks from 7 documents", printed), printed

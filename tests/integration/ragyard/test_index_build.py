"""`python -m ragyard run` builds the index through the running Dagster and shows its progress,
read from the run's event log over Dagster's GraphQL API."""

import io
import re
import time

import pytest
from rich.console import Console

from pipelines.ledger import Ledger
from ragyard.dagster_client import (
    Progress,
    active_ingest_runs,
    index_summary,
    run_progress,
)
from ragyard.index_build import build_index, progress_line
from ragyard.services import dagster_spec
from ragyard.settings import DagsterSettings
from ragyard.supervisor import Supervisor
from tests.conftest import free_port
from tests.corpus import write_corpus


@pytest.mark.parametrize("progress, line", [
    (None, "reading and chunking the changed documents"),
    (Progress(0, 14098), "embedding 0 / 14,098 chunks"),
    (Progress(1234, 14098, 19.2), "embedding 1,234 / 14,098 chunks, 19/s, ETA 11 min"),
    (Progress(14000, 14098, 19.0), "embedding 14,000 / 14,098 chunks, 19/s, ETA 5 s"),
    (Progress(100, 200_000, 19.0), "embedding 100 / 200,000 chunks, 19/s, ETA 2 h 55 min"),
    (Progress(14098, 14098, 19.0), "embedded 14,098 chunks; writing the index"),
])
def test_progress_line(progress, line):
    assert progress_line(progress) == line


def test_progress_line_of_a_finished_run():
    assert progress_line(Progress(14098, 14098, 19.0), finished=True) == "embedded 14,098 chunks"
    assert progress_line(None, finished=True) == "no chunks to embed"


def test_progress_round_trips_through_run_metadata():
    progress = Progress(1234, 14098, 19.25)
    assert Progress.from_metadata(progress.metadata()) == progress
    assert progress.metadata()["progress_eta_s"] == pytest.approx((14098 - 1234) / 19.25, abs=0.1)
    assert Progress.from_metadata({"embedded_chunks": 3}) is None


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
    with Supervisor(settings.logs_dir) as supervisor:
        supervisor.start_all([dagster_spec(settings)])
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

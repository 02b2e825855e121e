"""How `ragyard run` shows the index build's progress: the progress line, and the run metadata it reads."""

import pytest

from ragyard.dagster_client import Progress
from ragyard.index_build import progress_line


@pytest.mark.parametrize(
    "progress, line",
    [
        (None, "reading and chunking the changed documents"),
        (Progress(0, 14098), "embedding 0 / 14,098 chunks"),
        (Progress(1234, 14098, 19.2), "embedding 1,234 / 14,098 chunks, 19/s, ETA 11 min"),
        (Progress(14000, 14098, 19.0), "embedding 14,000 / 14,098 chunks, 19/s, ETA 5 s"),
        (Progress(100, 200_000, 19.0), "embedding 100 / 200,000 chunks, 19/s, ETA 2 h 55 min"),
        (Progress(14098, 14098, 19.0), "embedded 14,098 chunks; writing the index"),
    ],
)
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

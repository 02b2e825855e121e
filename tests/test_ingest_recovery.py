"""A run killed in the middle of writing the index, then run again, ends with the right index."""

import os
import signal
import subprocess
import sys
import time

from pipelines.ledger import Ledger
from pipelines.materialize import check_outcomes
from ragyard.services import prepare_dagster_home
from ragyard.settings import settings_env
from tests.conftest import index_metadata, run_ingest
from tests.corpus import rst_document

DOCUMENTS = 60


def test_killed_run_then_rerun_ends_with_the_right_index(settings, corpus):
    for n in range(DOCUMENTS):
        (corpus / f"page{n:03d}.rst").write_text(rst_document(f"topic {n}", sections=3))
    settings.ingest.write_batch_rows = 4  # many small writes: a wide window to kill in
    env = {**os.environ, **settings_env(settings), "DAGSTER_HOME": str(prepare_dagster_home(settings))}
    run = subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "pipelines.definitions", "-j", "ingest"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    ledger = Ledger(settings.ledger_path)
    deadline = time.monotonic() + 300
    try:
        while not ledger.entries() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGKILL)  # the whole run, as an OOM kill or a pulled plug would
    finally:
        run.wait(timeout=30)
    written, written_chunks = len(ledger.entries()), ledger.chunk_total()
    assert 0 < written < DOCUMENTS, f"the kill should land mid-write, but {written} documents were recorded"

    result = run_ingest(settings)
    meta = index_metadata(result)
    assert len(ledger.entries()) == DOCUMENTS
    assert meta["total_chunks"] == ledger.chunk_total()
    # What was recorded before the kill is kept; everything else is embedded again.
    assert meta["embedded_chunks"] == ledger.chunk_total() - written_chunks
    assert check_outcomes(result) == {
        "row_count_matches_ledger": True, "no_orphan_vectors": True, "embedding_dimension": True}

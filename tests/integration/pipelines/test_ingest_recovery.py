"""A run killed in the middle of embedding or of writing the index, then run again, ends with the
right index, without redoing the work done before the kill."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from pipelines.embedding import EmbeddingCheckpoint
from pipelines.ledger import Ledger
from pipelines.materialize import asset_metadata, check_outcomes
from ragyard.services import prepare_dagster_home
from ragyard.settings import settings_env
from tests.support.corpus import rst_document
from tests.support.ingest import (
    ALL_CHECKS,
    index_metadata,
    progress_observations,
    run_ingest,
)

DOCUMENTS = 60


def _write_documents(corpus) -> None:
    for n in range(DOCUMENTS):
        (corpus / f"page{n:03d}.rst").write_text(rst_document(f"topic {n}", sections=3))


def _kill_run_when(settings, condition: Callable[[], bool]) -> None:
    """Start the ingest job as `dagster job execute` does, and SIGKILL its whole process group
    (as an OOM kill or a pulled plug would) as soon as `condition` holds."""
    env = {**os.environ, **settings_env(settings), "DAGSTER_HOME": str(prepare_dagster_home(settings))}
    run = subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "pipelines.definitions", "-j", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while not condition() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGKILL)
    finally:
        run.wait(timeout=30)


def test_killed_run_then_rerun_ends_with_the_right_index(settings, corpus):
    _write_documents(corpus)
    settings.ingest.write_batch_rows = 4  # many small writes: a wide window to kill in
    ledger = Ledger(settings.ledger_path)
    _kill_run_when(settings, lambda: bool(ledger.entries()))
    written, written_chunks = len(ledger.entries()), ledger.chunk_total()
    assert 0 < written < DOCUMENTS, f"the kill should land mid-write, but {written} documents were recorded"

    result = run_ingest(settings)
    meta = index_metadata(result)
    assert len(ledger.entries()) == DOCUMENTS
    assert meta["total_chunks"] == ledger.chunk_total()
    # What was recorded before the kill is kept; everything else is written now, from the vectors the
    # killed run had checkpointed: the model encodes nothing again.
    assert meta["embedded_chunks"] == ledger.chunk_total() - written_chunks
    assert asset_metadata(result, "embeddings")["encoded_texts"] == 0
    assert check_outcomes(result) == ALL_CHECKS


def test_run_killed_mid_embedding_resumes_without_embedding_again(settings, corpus):
    _write_documents(corpus)
    settings.embedder.batch_size = 4  # checkpoints of 16 chunks: many of them before the embedding ends
    checkpoint = EmbeddingCheckpoint.beside(settings.ledger_path, settings.embedder.model, settings.embedder.dim)
    _kill_run_when(settings, lambda: checkpoint.count() > 0)
    ledger = Ledger(settings.ledger_path)
    embedded_before_kill = checkpoint.count()
    assert ledger.entries() == {}, "the kill should land before anything was written"

    result = run_ingest(settings)
    embedded = asset_metadata(result, "embeddings")
    total = embedded["embedded_chunks"]
    assert 0 < embedded_before_kill < total, "the kill should land mid-embedding"
    # The chunks embedded before the kill come from the checkpoint; the model encodes only the rest.
    assert embedded["checkpointed_chunks"] == embedded_before_kill
    assert embedded["encoded_texts"] == total - embedded_before_kill
    assert progress_observations(result)[0]["progress_done"] == embedded_before_kill
    assert ledger.chunk_total() == total and len(ledger.entries()) == DOCUMENTS
    assert checkpoint.count() == 0  # all written: the checkpoint is emptied
    assert check_outcomes(result) == ALL_CHECKS


def test_embedding_reports_progress_during_the_step(settings, corpus):
    _write_documents(corpus)
    settings.embedder.batch_size = 8  # 32 chunks per batch
    result = run_ingest(settings)
    observed = progress_observations(result)
    total = asset_metadata(result, "embeddings")["embedded_chunks"]
    done = [o["progress_done"] for o in observed]
    assert len(observed) == 1 + -(-total // 32)  # once before the first batch, then after each
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    assert {o["progress_total"] for o in observed} == {total}
    assert all(o["progress_rate_per_s"] > 0 and "progress_eta_s" in o for o in observed[1:])
    # Observed while the step ran: every observation comes before the step's materialization.
    events = [e.event_type_value for e in result.all_events]
    embeddings_done = next(
        i
        for i, e in enumerate(result.all_events)
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.path == ["embeddings"]
    )
    assert max(i for i, e in enumerate(events) if e == "ASSET_OBSERVATION") < embeddings_done

"""Build the index from the terminal: launch the ingest run on Dagster and show its progress."""

from __future__ import annotations

import time

from dagster import DagsterRunStatus
from rich.console import Console
from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as ProgressBar

from ragyard.dagster_client import (
    Progress,
    active_ingest_runs,
    cancel_orphaned_runs,
    index_summary,
    launch_ingest,
    run_progress,
    run_url,
    wait_for_run,
)
from ragyard.settings import Settings


def progress_line(progress: Progress | None, finished: bool = False) -> str:
    """What the terminal says about a run: its embedding progress, or the step it is in."""
    if progress is None:
        return "no chunks to embed" if finished else "reading and chunking the changed documents"
    if progress.done >= progress.total:
        return f"embedded {progress.total:,} chunks" + ("" if finished else "; writing the index")
    return progress.describe()


def _follow(settings: Settings, run_id: str, timeout_s: float, console: Console) -> DagsterRunStatus:
    """Wait for the run, with a progress bar of its embedding step."""
    console.print(f"ingest run {run_url(settings, run_id)}")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with ProgressBar(*columns, console=console) as bar:
        task = bar.add_task(progress_line(None), total=None)

        def show(finished: bool = False) -> None:
            progress = run_progress(settings, run_id)
            bar.update(
                task,
                description=progress_line(progress, finished),
                total=progress.total if progress else None,
                completed=progress.done if progress else 0,
            )

        status = wait_for_run(settings, run_id, timeout_s, on_poll=show)
        show(finished=True)
    return status


def build_index(settings: Settings, timeout_s: float, console: Console, platform_started: float | None = None) -> bool:
    """Bring the index up to date with an ingest run; True if it succeeded. A run already under way
    (the sensor starts one as soon as the platform is up, if files changed) is followed first: it
    does the work, and ours, queued behind it, finds little or nothing left. With `platform_started`,
    runs a killed platform left under way are marked canceled first (`cancel_orphaned_runs`)."""
    deadline = time.monotonic() + timeout_s
    if platform_started is not None:
        for run_id in cancel_orphaned_runs(settings, platform_started):
            console.print(
                f"[yellow]run {run_url(settings, run_id)} marked canceled: "
                "it ended with the platform that started it[/yellow]"
            )
    for run_id in active_ingest_runs(settings):
        _follow(settings, run_id, deadline - time.monotonic(), console)
    run_id = launch_ingest(settings)
    status = _follow(settings, run_id, deadline - time.monotonic(), console)
    if status != DagsterRunStatus.SUCCESS:
        console.print(f"[red]ingest run {status.value}[/red]: see {run_url(settings, run_id)}")
        return False
    built = index_summary(settings, run_id)
    skipped = built.get("skipped_files", 0)
    console.print(
        f"index ready: {built.get('total_chunks', 0):,} chunks from {built.get('indexed_documents', 0):,} documents "
        f"in collection {settings.milvus.collection!r}"
        + (f"; {skipped:,} files skipped, reasons in the run's metadata" if skipped else "")
    )
    return True

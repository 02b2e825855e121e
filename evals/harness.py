"""One harness for every eval: run it, log each of its runs to MLflow, write its summary into docs/evals.md.

Evals are registered by module name and imported only when run, so an eval whose module is not
in this checkout (or whose dependencies are missing) does not stop the others. Every run gets the
eval's own params plus the common ones (`common_params`): which index, chunker, embedder and
retriever settings it was measured against, so the MLflow UI compares any two runs side by side.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import io
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from evals.harness_types import EvalReport, EvalRun, ParamValue
from pipelines.ledger import Ledger
from ragyard.docs_report import machine, write_section
from ragyard.settings import Settings
from ragyard.tracking import mlflow_client

EVALS: dict[str, str] = {
    "retrieval": "evals.retrieval",
    "answers": "evals.answers",
    "safety": "evals.safety",
    "router": "evals.router",
    "cache": "evals.cache",
    "memory": "evals.memory",
    "backends": "evals.backends",
    "sqlite-answers": "evals.sqlite_answers",
}
# Evals that build indexes of their own or need the platform running with its largest model (minutes to
# hours): run by name only, never by `all`.
ON_DEMAND_EVALS = ("backends", "memory", "sqlite-answers")
REPO_ROOT = Path(__file__).resolve().parent.parent
EVALS_DOC = REPO_ROOT / "docs" / "evals.md"
_DOC_HEADER = (
    "# Evaluation results\n\nThe latest figures of each eval, with the date and the machine. Every run is also an "
    "MLflow run\n(experiment in the heading), where runs can be compared side by side.\n"
)
_PARAM_MAX_CHARS = 6000  # MLflow's limit on a param value

# Tags on every eval run.
EVAL_TAG = "ragyard.eval"
BATCH_TAG = "ragyard.eval_batch"  # the runs of one harness invocation share it
QUICK_TAG = "ragyard.quick"


class EvalUnavailable(LookupError):
    """The eval is unknown, or its module is not in this checkout."""


@dataclass
class HarnessResult:
    name: str
    report: EvalReport
    experiment: str
    run_ids: list[str]  # in the order of report.runs; empty when nothing was logged


def load_eval(name: str) -> ModuleType:
    if name not in EVALS:
        raise EvalUnavailable(f"unknown eval {name!r}; known: {', '.join(EVALS)}")
    module_name = EVALS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise EvalUnavailable(f"eval {name!r}: module {module_name} is not in this checkout") from exc
        raise
    if not callable(getattr(module, "evaluate", None)):
        raise EvalUnavailable(f"eval {name!r}: {module_name} has no evaluate(settings, quick=False)")
    return module


def available_evals() -> list[str]:
    """The registered evals whose module exists here (found without importing it)."""
    return [name for name, module in EVALS.items() if importlib.util.find_spec(module) is not None]


def index_version(settings: Settings) -> tuple[str, int, int]:
    """(version, documents, chunks) of what the collection holds, from the ingestion ledger.

    The version digests every document's content hash and settings fingerprint, so it changes
    exactly when the index's content does; "unknown" when this machine has no ledger (an index
    built elsewhere).
    """
    if not settings.ledger_path.exists():
        return "unknown", 0, 0
    ledger = Ledger(settings.ledger_path)
    entries = ledger.entries()
    return ledger.content_version(entries), len(entries), sum(e.chunk_count for e in entries.values())


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def common_params(settings: Settings) -> dict[str, ParamValue]:
    """What every eval run was measured against; an eval's own params override these."""
    version, documents, chunks = index_version(settings)
    r, c, e = settings.retriever, settings.chunker, settings.embedder
    return {
        "index_version": version,
        "index_documents": documents,
        "index_chunks": chunks,
        "collection": settings.milvus.collection,
        "chunker_max_chars": c.max_chars,
        "chunker_overlap_chars": c.overlap_chars,
        "chunker_min_chars": c.min_chars,
        "embedder_model": e.model,
        "embedder_dim": e.dim,
        "embedder_backend": e.backend,
        "fusion": r.fusion,
        "rrf_k": r.rrf_k,
        "dense_weight": r.dense_weight,
        "reranker_model": r.reranker_model or "none",
        "prompt_name": settings.prompts.name,
        "prompt_alias": settings.prompts.alias,
    }


def experiment_for(name: str, report: EvalReport, settings: Settings) -> str:
    return settings.evals.experiments.get(name, report.experiment)


def experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _cell(value) -> str | int | float | bool | None:
    return value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value)


def table_csv(rows: list[dict]) -> str:
    """Rows as CSV: columns in first-seen order, nested values as JSON."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def log_run(client, exp_id: str, run: EvalRun, params: dict[str, ParamValue], tags: dict[str, str]) -> str:
    """One MLflow run: params, metrics, each table as JSON and CSV artifacts; FAILED if logging breaks."""
    from mlflow.entities import Metric, Param

    created = client.create_run(exp_id, run_name=run.name, tags=tags)
    run_id = created.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, float(value), now, 0) for key, value in run.metrics.items()],
            params=[Param(key, str(value)[:_PARAM_MAX_CHARS]) for key, value in params.items()],
        )
        for table, rows in run.tables.items():
            client.log_dict(run_id, rows, f"{table}.json")
            client.log_text(run_id, table_csv(rows), f"{table}.csv")
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def log_report(
    client, experiment: str, eval_name: str, report: EvalReport, common: dict[str, ParamValue], quick: bool
) -> list[str]:
    exp_id = experiment_id(client, experiment)
    tags = {
        EVAL_TAG: eval_name,
        BATCH_TAG: uuid.uuid4().hex[:12],
        QUICK_TAG: str(quick).lower(),
        "ragyard.git_commit": git_commit(),
        "ragyard.machine": machine(),
        "ragyard.load_average": f"{os.getloadavg()[0]:.1f}",
    }  # timings depend on the machine's load
    return [log_run(client, exp_id, run, {**common, **run.params}, tags) for run in report.runs]


def measured_against(common: dict[str, ParamValue]) -> str:
    """One sentence naming the index and settings a run was measured against."""
    c = common
    reranker = "" if c["reranker_model"] == "none" else f", reranker {c['reranker_model']}"
    return (
        f"Index `{c['collection']}` version `{c['index_version']}` ({c['index_chunks']:,} chunks from "
        f"{c['index_documents']:,} documents; chunker {c['chunker_max_chars']}/{c['chunker_overlap_chars']}/"
        f"{c['chunker_min_chars']} max/overlap/min chars; {c['embedder_model']} on "
        f"{c.get('embedder_backend', 'torch')}); hybrid fusion {c['fusion']}"
        + (f" k={c['rrf_k']}" if c["fusion"] == "rrf" else f" dense weight {c['dense_weight']}")
        + reranker
        + "."
    )


def write_summary(
    eval_name: str,
    experiment: str,
    report: EvalReport,
    common: dict[str, ParamValue],
    command: str,
    path: Path = EVALS_DOC,
    run_ids: list[str] | None = None,
) -> None:
    """Replace the eval's section of docs/evals.md: date, machine, command, setup, the eval's own summary,
    and the MLflow run behind each run of the report."""
    load = os.getloadavg()[0]  # timings depend on what else the machine was doing
    runs = ", ".join(f"{run.name} `{run_id}`" for run, run_id in zip(report.runs, run_ids or [], strict=False))
    body = (
        f"Command: `{command}`, load average {load:.1f} at the end. {measured_against(common)}\n\n"
        f"{report.summary_markdown}" + (f"\n\nMLflow runs (experiment `{experiment}`): {runs}." if runs else "")
    )
    write_section(f"{eval_name.capitalize()} (experiment `{experiment}`)", body, report=path, header=_DOC_HEADER)


def run_eval(
    name: str, settings: Settings, quick: bool = False, log_to_mlflow: bool = True, docs: Path | None = None, **options
) -> HarnessResult:
    """Run one eval (`options` go to its `evaluate`), log it to MLflow, and write `docs` if given."""
    module = load_eval(name)
    client = None
    if log_to_mlflow:
        client = mlflow_client(settings.mlflow.url)
        client.search_experiments(max_results=1)  # fail fast, before the eval's work, if MLflow is down
    common = common_params(settings)  # before the eval: the index it is measured against
    report = module.evaluate(settings, quick=quick, **options)
    experiment = experiment_for(name, report, settings)
    run_ids = log_report(client, experiment, name, report, common, quick) if client is not None else []
    if docs is not None:
        command = f"ragyard eval run {name}" + (" --quick" if quick else "")
        write_summary(name, experiment, report, common, command, docs, run_ids)
    return HarnessResult(name, report, experiment, run_ids)

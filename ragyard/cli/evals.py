"""`ragyard eval run retrieval|answers|safety|router|cache|backends|all [--quick]`; the regression baseline."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evals import harness
from evals.baseline import check_regression, find_baseline, gated_run_id, latest_run, set_baseline
from evals.harness import EVALS_DOC, available_evals, run_eval
from evals.retrieval import DEFAULT_DATASET, EXPERIMENT, MODES
from ragyard.settings import Settings
from ragyard.tracking import mlflow_client

EXIT_FAILED, EXIT_REGRESSION = 2, 1


def add_eval(commands, name: str, summary: str) -> None:
    parser = commands.add_parser(name, help=summary, description=summary)
    parser.set_defaults(handler=main)
    actions = parser.add_subparsers(dest="action", required=True)
    run = actions.add_parser(
        "run", help="run evals, log every run to MLflow, write full runs' figures to docs/evals.md"
    )
    run.add_argument(
        "eval", choices=[*harness.EVALS, "all"], help="the eval; `all` runs every one present in this checkout"
    )
    run.add_argument("--quick", action="store_true", help="the fast subset (what `make eval` runs)")
    run.add_argument("--no-mlflow", action="store_true", help="print the summaries only, log nothing")
    run.add_argument(
        "--no-docs", action="store_true", help="do not write docs/evals.md (quick runs, --dataset and --mode never do)"
    )
    run.add_argument(
        "--gate", action="store_true", help="check retrieval against its MLflow baseline; exit 1 on a regression"
    )
    retrieval = run.add_argument_group("retrieval only")
    retrieval.add_argument(
        "--dataset",
        type=Path,
        help=f"JSONL question set (default: RAGYARD_EVALS__RETRIEVAL_DATASET or {DEFAULT_DATASET.name})",
    )
    retrieval.add_argument(
        "--mode",
        action="append",
        choices=MODES,
        dest="modes",
        help="search mode to evaluate; repeat for several (default: all)",
    )

    baseline = actions.add_parser("baseline", help="the retrieval regression gate's baseline run in MLflow")
    baseline_actions = baseline.add_subparsers(dest="baseline_action", required=True)
    set_ = baseline_actions.add_parser(
        "set", help="make a run the baseline of its eval set (default: the latest run of the gate's mode)"
    )
    set_.add_argument("--run-id", help="an MLflow run id of the retrieval experiment")
    set_.add_argument("--quick", action="store_true", help="the latest quick-subset run rather than a full one")
    baseline_actions.add_parser("show", help="print the baselines of the gate's mode, quick and full")
    actions.add_parser("list", help="the evals registered, and whether each is present in this checkout")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    names = [n for n in available_evals() if n not in harness.ON_DEMAND_EVALS] if args.eval == "all" else [args.eval]
    if args.eval == "all":
        print(
            f"evals present: {', '.join(names)}; not in this checkout: "
            f"{', '.join(sorted(set(harness.EVALS) - set(names) - set(harness.ON_DEMAND_EVALS))) or 'none'}; "
            f"by name only: {', '.join(harness.ON_DEMAND_EVALS)}"
        )
    retrieval_options = {"dataset": args.dataset, **({"modes": tuple(args.modes)} if args.modes else {})}
    # docs/evals.md keeps the standard full runs: not quick ones, nor a chosen dataset or mode subset.
    docs = None if (args.quick or args.no_docs or args.no_mlflow or args.dataset or args.modes) else EVALS_DOC
    status = 0
    for name in names:
        options = retrieval_options if name == "retrieval" else {}
        try:
            result = run_eval(name, settings, quick=args.quick, log_to_mlflow=not args.no_mlflow, docs=docs, **options)
        except Exception as exc:  # noqa: BLE001 - one eval failing (a bento down, no index) does not stop the others
            print(f"error: eval {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        print(f"\n## {name}\n\n{result.report.summary_markdown}")
        if result.run_ids:
            print(
                f"\nMLflow runs in experiment {result.experiment!r} at {settings.mlflow.url}: "
                f"{', '.join(result.run_ids)}"
            )
        if args.gate and name == "retrieval" and result.run_ids:
            try:
                run_id = gated_run_id(result, settings)
            except ValueError as exc:
                print(f"regression gate not applied: {exc}")
                continue
            gate = check_regression(mlflow_client(settings.mlflow.url), run_id, settings)
            print(f"regression gate {'passed' if gate.passed else 'FAILED'}: {gate.message}")
            if not gate.passed and status == 0:
                status = EXIT_REGRESSION
    return status


def _baseline(args: argparse.Namespace, settings: Settings) -> int:
    client = mlflow_client(settings.mlflow.url)
    experiment = settings.evals.experiments.get("retrieval", EXPERIMENT)
    mode = settings.evals.gate_mode
    if args.baseline_action == "set":
        run_id = args.run_id
        if run_id is None:
            run = latest_run(client, experiment, mode, args.quick)
            if run is None:
                print(
                    f"error: no finished {'quick ' if args.quick else ''}retrieval run of mode {mode!r} in "
                    f"experiment {experiment!r}; run `ragyard eval run retrieval` first",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            run_id = run.info.run_id
        cleared = set_baseline(client, run_id)
        print(f"baseline: run {run_id}" + (f" (was {', '.join(cleared)})" if cleared else ""))
        return 0
    for quick in (False, True):
        run = latest_run(client, experiment, mode, quick)
        baseline = find_baseline(client, run) if run is not None else None
        label = "quick" if quick else "full"
        if baseline is None:
            print(f"{label}: no baseline")
        else:
            print(
                f"{label}: run {baseline.info.run_id} ({baseline.data.params['dataset']}, mode {mode}), "
                f"{settings.evals.gate_metric} {baseline.data.metrics[settings.evals.gate_metric]:.4f}"
            )
    return 0


def main(args: argparse.Namespace) -> int:
    # Models come from packages: nothing may be fetched from a hub (sentence-transformers loads lazily).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = Settings()
    if args.action == "list":
        present = set(available_evals())
        for name, module in harness.EVALS.items():
            print(f"{name:10} {module:18} {'present' if name in present else 'not in this checkout'}")
        return 0
    try:
        return _run(args, settings) if args.action == "run" else _baseline(args, settings)
    except Exception as exc:
        if type(exc).__module__.startswith("mlflow"):
            print(f"error: MLflow at {settings.mlflow.url}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise

"""`python -m evals run retrieval|answers|safety|router|cache|all [--quick]`, and the regression gate's baseline."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_FAILED, EXIT_REGRESSION = 2, 1


def parser() -> argparse.ArgumentParser:
    from evals.harness import EVALS
    from evals.retrieval import DEFAULT_DATASET, MODES

    root = argparse.ArgumentParser(prog="python -m evals", description="ragyard evaluation harness")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run evals, log every run to MLflow, write full runs' figures to "
                                          "docs/evals.md")
    run.add_argument("eval", choices=[*EVALS, "all"], help="the eval; `all` runs every one present in this checkout")
    run.add_argument("--quick", action="store_true", help="the fast subset (what `make eval` runs)")
    run.add_argument("--no-mlflow", action="store_true", help="print the summaries only, log nothing")
    run.add_argument("--no-docs", action="store_true",
                     help="do not write docs/evals.md (quick runs, --dataset and --mode never do)")
    run.add_argument("--gate", action="store_true",
                     help="check retrieval against its MLflow baseline; exit 1 on a regression")
    retrieval = run.add_argument_group("retrieval only")
    retrieval.add_argument("--dataset", type=Path, help="JSONL question set (default: "
                           f"RAGYARD_EVALS__RETRIEVAL_DATASET or {DEFAULT_DATASET.name})")
    retrieval.add_argument("--mode", action="append", choices=MODES, dest="modes",
                           help="search mode to evaluate; repeat for several (default: all)")

    baseline = commands.add_parser("baseline", help="the retrieval regression gate's baseline run in MLflow")
    actions = baseline.add_subparsers(dest="action", required=True)
    set_ = actions.add_parser("set", help="make a run the baseline of its eval set (default: the latest run of "
                                          "the gate's mode)")
    set_.add_argument("--run-id", help="an MLflow run id of the retrieval experiment")
    set_.add_argument("--quick", action="store_true", help="the latest quick-subset run rather than a full one")
    actions.add_parser("show", help="print the baselines of the gate's mode, quick and full")
    commands.add_parser("list", help="the evals registered, and whether each is present in this checkout")
    return root


def _run(args: argparse.Namespace, settings) -> int:
    from evals.baseline import check_regression, gated_run_id
    from evals.harness import EVALS, EVALS_DOC, available_evals, run_eval
    from ragyard.tracking import mlflow_client

    names = available_evals() if args.eval == "all" else [args.eval]
    if args.eval == "all":
        print(f"evals present: {', '.join(names)}; not in this checkout: "
              f"{', '.join(sorted(set(EVALS) - set(names))) or 'none'}")
    retrieval_options = {"dataset": args.dataset, **({"modes": tuple(args.modes)} if args.modes else {})}
    # docs/evals.md keeps the standard full runs: not quick ones, nor a chosen dataset or mode subset.
    docs = None if (args.quick or args.no_docs or args.no_mlflow or args.dataset or args.modes) else EVALS_DOC
    status = 0
    for name in names:
        options = retrieval_options if name == "retrieval" else {}
        try:
            result = run_eval(name, settings, quick=args.quick, log_to_mlflow=not args.no_mlflow, docs=docs,
                              **options)
        except Exception as exc:  # one eval failing (a bento down, no index) does not stop the others
            print(f"error: eval {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        print(f"\n## {name}\n\n{result.report.summary_markdown}")
        if result.run_ids:
            print(f"\nMLflow runs in experiment {result.experiment!r} at {settings.mlflow.url}: "
                  f"{', '.join(result.run_ids)}")
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


def _baseline(args: argparse.Namespace, settings) -> int:
    from evals.baseline import find_baseline, latest_run, set_baseline
    from evals.retrieval import EXPERIMENT
    from ragyard.tracking import mlflow_client

    client = mlflow_client(settings.mlflow.url)
    experiment = settings.evals.experiments.get("retrieval", EXPERIMENT)
    mode = settings.evals.gate_mode
    if args.action == "set":
        run_id = args.run_id
        if run_id is None:
            run = latest_run(client, experiment, mode, args.quick)
            if run is None:
                print(f"error: no finished {'quick ' if args.quick else ''}retrieval run of mode {mode!r} in "
                      f"experiment {experiment!r}; run `python -m evals run retrieval` first", file=sys.stderr)
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
            print(f"{label}: run {baseline.info.run_id} ({baseline.data.params['dataset']}, mode {mode}), "
                  f"{settings.evals.gate_metric} {baseline.data.metrics[settings.evals.gate_metric]:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from evals.harness import EVALS, available_evals
    from ragyard.settings import Settings

    settings = Settings()
    if args.command == "list":
        present = set(available_evals())
        for name, module in EVALS.items():
            print(f"{name:10} {module:18} {'present' if name in present else 'not in this checkout'}")
        return 0
    try:
        return _run(args, settings) if args.command == "run" else _baseline(args, settings)
    except Exception as exc:
        if type(exc).__module__.startswith("mlflow"):
            print(f"error: MLflow at {settings.mlflow.url}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())

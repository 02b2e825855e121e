"""`python -m evals run retrieval`: evaluate the configured collection and log to MLflow."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    from evals.retrieval import DEFAULT_DATASET, EXPERIMENT, MODES

    root = argparse.ArgumentParser(prog="python -m evals", description="ragyard evaluation harness")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an evaluation")
    evals = run.add_subparsers(dest="eval", required=True)
    retrieval = evals.add_parser(
        "retrieval", help="recall@5/10, MRR@10, nDCG@10 per search mode against the collection in RAGYARD_* settings")
    retrieval.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="JSONL question set")
    retrieval.add_argument("--mode", action="append", choices=MODES, dest="modes",
                           help="search mode to evaluate; repeat for several (default: all)")
    retrieval.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    retrieval.add_argument("--no-mlflow", action="store_true", help="print the table only, log nothing")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from bentos.retriever.search import CollectionUnavailable
    from evals.retrieval import MODES, DatasetError, markdown_table, run_retrieval_eval
    from ragyard.settings import Settings

    settings = Settings()
    try:
        report, run_ids = run_retrieval_eval(settings, args.dataset, tuple(args.modes or MODES), args.experiment,
                                             log_to_mlflow=not args.no_mlflow)
    except (CollectionUnavailable, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__module__.startswith("mlflow"):
            print(f"error: MLflow at {settings.mlflow.url}: {exc}", file=sys.stderr)
            return 2
        raise
    print(markdown_table(report))
    if run_ids:
        print(f"\nMLflow runs in experiment {args.experiment!r} at {settings.mlflow.url}: {', '.join(run_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

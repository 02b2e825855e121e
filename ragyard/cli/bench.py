"""`ragyard bench [NAME ...]`: run the named benchmarks (all by default) in order.

Each benchmark module has a `main()` that measures and writes its section of docs/benchmarks.md.
Run them on an otherwise idle machine: this one has 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

BENCHMARKS = {  # in run order: `ingest` builds the index that `retriever` measures
    "ingest": "benchmarks.ingest",
    "embedder": "benchmarks.embedder",
    "retriever": "benchmarks.retriever",
    "vector_index": "benchmarks.vector_index",
    "llm": "benchmarks.llm",
    "safety": "benchmarks.safety",
    "gateway": "benchmarks.gateway",
}


def _benchmark(name: str) -> str:
    if name not in BENCHMARKS:
        raise argparse.ArgumentTypeError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    return name


def add_bench(commands, name: str, summary: str) -> None:
    parser = commands.add_parser(name, help=summary, description=summary)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        type=_benchmark,
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.set_defaults(handler=run_benchmarks)


def run_benchmarks(args: argparse.Namespace) -> int:
    names = args.names or list(BENCHMARKS)
    with handed_over_index(names):
        for name in names:
            print(f"== benchmark: {name}", flush=True)
            importlib.import_module(BENCHMARKS[name]).main()
    return 0


@contextlib.contextmanager
def handed_over_index(names: list[str]) -> Iterator[None]:
    """When `ingest` and `retriever` both run and no index was named, the index `ingest` builds is
    kept (RAGYARD_BENCH_KEEP) for `retriever`, in a temporary folder removed afterwards."""
    if (
        not {"ingest", "retriever"} <= set(names)
        or os.environ.get("RAGYARD_BENCH_KEEP")
        or os.environ.get("RAGYARD_BENCH_INDEX")
    ):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ragyard-bench-") as tmp:
        os.environ["RAGYARD_BENCH_KEEP"] = str(Path(tmp) / "index")  # ingest wants a folder not there yet
        try:
            yield
        finally:
            del os.environ["RAGYARD_BENCH_KEEP"]

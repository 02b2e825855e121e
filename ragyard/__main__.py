"""`python -m ragyard run`: start the platform on this machine, build the index, print the URLs."""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.table import Table

from ragyard.index_build import build_index
from ragyard.services import platform_services
from ragyard.settings import Settings
from ragyard.supervisor import ServiceFailed, Supervisor, install_signal_handlers

console = Console()


def _seed_prompts(settings: Settings) -> None:
    # Imported here: the prompt registry client pulls in MLflow, which only `run` needs.
    from router.prompts import seed_prompts

    try:
        prompt = seed_prompts(settings)
    except Exception as exc:  # the router still answers, with its built-in prompt
        console.print(f"[red]could not seed the prompt registry at {settings.mlflow.url}: {exc}[/red]")
        return
    console.print(f"prompt {prompt.name}@{prompt.alias} is version {prompt.version}")


def _print_urls(supervisor: Supervisor, specs) -> None:
    table = Table(title="ragyard is running (Ctrl-C stops everything)")
    table.add_column("service")
    table.add_column("URL")
    table.add_column("pid")
    pids = supervisor.pids()
    for spec in specs:
        table.add_row(spec.name, spec.ui_url or "", str(pids.get(spec.name, "")))
    console.print(table)
    # A plain, unwrapped line too, for scripts that wait on it.
    print("READY " + " ".join(f"{s.name}={s.ui_url}" for s in specs if s.ui_url), flush=True)


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    install_signal_handlers()
    specs = platform_services(settings)
    try:
        with Supervisor(settings.logs_dir) as supervisor:
            console.print(f"data directory: {settings.home}; logs: {settings.logs_dir}")
            supervisor.start_all(specs)  # returns once every service is healthy, MLflow included
            _seed_prompts(settings)
            indexed = args.skip_index or build_index(settings, args.index_timeout, console)
            _print_urls(supervisor, specs)
            if args.exit_after_start:
                return 0 if indexed else 1
            supervisor.wait_forever()
    except KeyboardInterrupt:
        console.print("stopped every service")
        return 0
    except ServiceFailed as e:
        console.print(f"[red]{e}[/red]")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health poll otherwise
    parser = argparse.ArgumentParser(prog="ragyard")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start every service, build the index, print the URLs")
    run_parser.add_argument("--skip-index", action="store_true", help="do not launch the ingest job")
    run_parser.add_argument("--index-timeout", type=float, default=3600.0, help="seconds to wait for the index")
    run_parser.add_argument("--exit-after-start", action="store_true",
                            help="stop everything once started and indexed (a smoke test)")
    run_parser.set_defaults(handler=run)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

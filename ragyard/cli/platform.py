"""`ragyard run`: start the platform on this machine, print the URLs, build the index, and keep the
services running; `ragyard status`: what runs, as the supervisor last wrote it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ragyard.index_build import build_index
from ragyard.keeper import ServiceKeeper
from ragyard.services import platform_services
from ragyard.settings import Settings
from ragyard.status import (
    ServiceState,
    ServiceStatus,
    read_status,
    running_platform,
    status_path,
)
from ragyard.supervisor import install_signal_handlers

console = Console()
_STATE_STYLE = {
    ServiceState.STARTING: "[yellow]{}[/yellow]",
    ServiceState.UP: "[green]{}[/green]",
    ServiceState.RESTARTING: "[yellow]{}[/yellow]",
    ServiceState.FAILED: "[bold red]{}[/bold red]",
    ServiceState.STOPPED: "{}",
}


def _seed_prompts(settings: Settings) -> None:
    # Imported here: the prompt registry client pulls in MLflow, which only `run` needs.
    from router.prompts import seed_prompts

    try:
        prompt = seed_prompts(settings)
    except Exception as exc:  # noqa: BLE001 - the router still answers, with its built-in prompt
        console.print(f"[red]could not seed the prompt registry at {settings.mlflow.url}: {exc}[/red]")
        return
    console.print(f"prompt {prompt.name}@{prompt.alias} is version {prompt.version}")


def _print_urls(services: list[ServiceStatus], logs_dir: Path) -> None:
    table = Table(title="ragyard is running (Ctrl-C stops everything)")
    for column in ("service", "state", "URL", "pid"):
        table.add_column(column)
    for svc in services:
        table.add_row(svc.name, _STATE_STYLE[svc.state].format(svc.state.value), svc.url or "", str(svc.pid or ""))
    console.print(table)
    for svc in services:
        if svc.state is ServiceState.FAILED:
            console.print(
                f"[bold red]FAILED {svc.name}: {svc.last_exit}[/bold red]\n"
                f"  the other services keep running; its log: {logs_dir / f'{svc.name}.log'}; "
                "`python -m ragyard status` shows the state of every service"
            )
        elif svc.state is not ServiceState.UP:
            console.print(
                f"[bold yellow]RESTARTING {svc.name}: {svc.last_exit}[/bold yellow]\n"
                "  retried in the background; `python -m ragyard status` tells when it is up"
            )
    # A plain, unwrapped line too, for scripts that wait on it: the services that are up.
    print(
        "READY " + " ".join(f"{s.name}={s.url}" for s in services if s.url and s.state is ServiceState.UP), flush=True
    )


def _index(settings: Settings, timeout_s: float, services: dict[str, ServiceStatus], started: float) -> bool:
    """Build the index if Dagster is up; a failure of the build leaves the services running."""
    if (dagster := services["dagster"]).state is not ServiceState.UP:
        console.print(f"[red]not building the index: dagster is {dagster.state.value} ({dagster.last_exit})[/red]")
        return False
    try:
        return build_index(settings, timeout_s, console, platform_started=started)
    except Exception as exc:  # noqa: BLE001 - e.g. Dagster crashed mid-build: the platform keeps serving
        console.print(
            f"[red]building the index failed: {exc!r}[/red]; the services keep running: launch the "
            f"`ingest` job again from the Dagster UI ({settings.dagster.url})"
        )
        return False


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    install_signal_handlers()
    status_file = status_path(settings)
    if (previous := running_platform(status_file)) is not None:
        console.print(
            f"[red]a platform is already running with the data directory {settings.home} (supervisor "
            f"pid {previous.supervisor_pid}): `python -m ragyard status` shows it[/red]"
        )
        return 1
    specs = platform_services(settings)
    platform_started = time.time()  # Dagster runs created before it were left by a platform that is gone
    try:
        with ServiceKeeper(specs, settings.logs_dir, settings.supervisor, status_file) as keeper:
            console.print(f"data directory: {settings.home}; logs: {settings.logs_dir}")
            started = keeper.start_all()  # returns once every service is up, failed, or has crashed once
            services = {s.name: s for s in started}
            if services.get("mlflow") is None or services["mlflow"].state is ServiceState.UP:
                _seed_prompts(settings)
            _print_urls(started, settings.logs_dir)
            indexed = args.skip_index or _index(settings, args.index_timeout, services, platform_started)
            all_up = all(s.state is ServiceState.UP for s in started)
            if args.exit_after_start:
                return 0 if indexed and all_up else 1
            keeper.wait_forever()  # returns only once every service has failed
            console.print("[bold red]every service has failed: stopping[/bold red]")
            return 1
    except KeyboardInterrupt:
        console.print("stopped every service")
        return 0


def show_status(args: argparse.Namespace) -> int:
    """Print each service's state; exit status 0 while a platform runs, 3 when none does."""
    settings = Settings()
    path = status_path(settings)
    try:
        current = read_status(path)
    except ValidationError as exc:
        print(f"{path} is not a status file of ragyard: {exc}", file=sys.stderr)
        return 1
    running = current is not None and current.supervisor_alive()
    if args.json:
        print(json.dumps({"running": running, **(current.model_dump(mode="json") if current else {})}, indent=2))
    elif current is None:
        print(f"no platform is running: none has run with the data directory {settings.home}")
    elif not running:
        print(
            f"no platform is running with the data directory {settings.home}: its supervisor (pid "
            f"{current.supervisor_pid}) has ended; last status written {_when(current.updated_at)}"
        )
    else:
        table = Table(title=f"ragyard: supervisor pid {current.supervisor_pid}, data directory {settings.home}")
        for column in ("service", "state", "pid", "restarts", "last exit", "URL", "since"):
            table.add_column(column)
        for svc in current.services:
            table.add_row(
                svc.name,
                _STATE_STYLE[svc.state].format(svc.state.value),
                str(svc.pid or "-"),
                str(svc.restarts),
                svc.last_exit or "-",
                svc.url or "-",
                _when(svc.since),
            )
        console.print(table)
    return 0 if running else 3


def _when(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def add_run(commands, name: str, summary: str) -> None:
    run_parser = commands.add_parser(name, help=summary, description=summary)
    run_parser.add_argument("--skip-index", action="store_true", help="do not launch the ingest job")
    run_parser.add_argument("--index-timeout", type=float, default=3600.0, help="seconds to wait for the index")
    run_parser.add_argument(
        "--exit-after-start", action="store_true", help="stop everything once started and indexed (a smoke test)"
    )
    run_parser.set_defaults(handler=run)


def add_status(commands, name: str, summary: str) -> None:
    status_parser = commands.add_parser(name, help=summary, description=summary)
    status_parser.add_argument("--json", action="store_true", help="print the status file's content as JSON")
    status_parser.set_defaults(handler=show_status)

"""Launch the ingest job on the running Dagster webserver and wait for it, over its GraphQL API."""

from __future__ import annotations

import time

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from ragyard.settings import Settings

_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def launch_ingest(settings: Settings) -> str:
    client = DagsterGraphQLClient(settings.dagster.host, port_number=settings.dagster.port, timeout=60)
    return client.submit_job_execution("ingest", tags={"ragyard/trigger": "ragyard run"})


def wait_for_run(settings: Settings, run_id: str, timeout_s: float, poll_s: float = 2.0) -> DagsterRunStatus:
    client = DagsterGraphQLClient(settings.dagster.host, port_number=settings.dagster.port, timeout=60)
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_run_status(run_id)
        if status in _FINISHED or time.monotonic() > deadline:
            return status
        time.sleep(poll_s)


def run_url(settings: Settings, run_id: str) -> str:
    return f"{settings.dagster.url}/runs/{run_id}"

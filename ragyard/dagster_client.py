"""Launch the ingest job on the running Dagster webserver, wait for it and read its progress, over
its GraphQL API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

from ragyard.settings import Settings

_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
# The asset whose observations carry the embedding progress of a run, and the index asset whose
# materialization says what the run built (pipelines/assets.py).
PROGRESS_ASSET = "embeddings"
INDEX_ASSET = "vector_index"


@dataclass(frozen=True)
class Progress:
    """How far the embedding step of an ingest run is: chunks with a vector of all it embeds, and
    the model's rate (chunks per second, None before a batch was encoded)."""

    done: int
    total: int
    rate_per_s: float | None = None

    @property
    def eta_s(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / self.rate_per_s if self.rate_per_s else None

    def describe(self) -> str:
        """ "embedding 1,234 / 14,098 chunks, 19/s, ETA 11 min"."""
        parts = [f"embedding {self.done:,} / {self.total:,} chunks"]
        if self.rate_per_s:
            parts.append(f"{self.rate_per_s:,.0f}/s")
        if self.eta_s is not None and self.done < self.total:
            parts.append(f"ETA {_duration(self.eta_s)}")
        return ", ".join(parts)

    def metadata(self) -> dict[str, int | float]:
        values: dict[str, int | float] = {"progress_done": self.done, "progress_total": self.total}
        if self.rate_per_s:
            values["progress_rate_per_s"] = round(self.rate_per_s, 2)
        if self.eta_s is not None:
            values["progress_eta_s"] = round(self.eta_s, 1)
        return values

    @classmethod
    def from_metadata(cls, values: dict) -> Progress | None:
        if "progress_done" not in values or "progress_total" not in values:
            return None
        return cls(int(values["progress_done"]), int(values["progress_total"]), values.get("progress_rate_per_s"))


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _client(settings: Settings) -> DagsterGraphQLClient:
    return DagsterGraphQLClient(settings.dagster.host, port_number=settings.dagster.port, timeout=60)


def launch_ingest(settings: Settings) -> str:
    return _client(settings).submit_job_execution("ingest", tags={"ragyard/trigger": "ragyard run"})


def wait_for_run(
    settings: Settings, run_id: str, timeout_s: float, poll_s: float = 2.0, on_poll: Callable[[], None] | None = None
) -> DagsterRunStatus:
    """The run's status once finished, or when `timeout_s` have passed; `on_poll` is called between
    two status checks (the terminal shows progress with it)."""
    client = _client(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_run_status(run_id)
        if status in _FINISHED or time.monotonic() > deadline:
            return status
        if on_poll:
            on_poll()
        time.sleep(poll_s)


def run_url(settings: Settings, run_id: str) -> str:
    return f"{settings.dagster.url}/runs/{run_id}"


_METADATA = """assetKey { path }
          metadataEntries {
            label
            ... on IntMetadataEntry { intValue }
            ... on FloatMetadataEntry { floatValue }
          }"""
_RUN_ASSET_EVENTS = """
query RunAssetEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on ObservationEvent { METADATA }
        ... on MaterializationEvent { METADATA }
      }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
""".replace("METADATA", _METADATA)


def _graphql(http: httpx.Client, query: str, variables: dict | None = None) -> dict:
    response = http.post("/graphql", json={"query": query, "variables": variables or {}})
    response.raise_for_status()
    return response.json()["data"]


def _run_asset_events(settings: Settings, run_id: str) -> Iterator[tuple[str, list[str], dict]]:
    """(event type, asset key path, numeric metadata) of the run's asset events, oldest first."""
    cursor = None
    with httpx.Client(base_url=settings.dagster.url, timeout=60) as http:
        while True:
            answer = _graphql(http, _RUN_ASSET_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
            if answer["__typename"] != "EventConnection":
                raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))
            for event in answer["events"]:
                if "assetKey" in event:
                    values = {e["label"]: e.get("intValue", e.get("floatValue")) for e in event["metadataEntries"]}
                    yield event["__typename"], event["assetKey"]["path"], values
            if not answer["hasMore"]:
                return
            cursor = answer["cursor"]


_ACTIVE_INGEST_RUNS = """
query ActiveIngestRuns {
  runsOrError(filter: {pipelineName: "ingest", statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
    __typename
    ... on Runs { results { runId } }
    ... on PythonError { message }
  }
}
"""


def active_ingest_runs(settings: Settings) -> list[str]:
    """Ingest runs queued or under way, oldest first."""
    with httpx.Client(base_url=settings.dagster.url, timeout=60) as http:
        answer = _graphql(http, _ACTIVE_INGEST_RUNS)["runsOrError"]
    if answer["__typename"] != "Runs":
        raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))
    return [run["runId"] for run in reversed(answer["results"])]


_UNFINISHED_RUNS = """
query UnfinishedRuns {
  runsOrError(filter: {statuses: [STARTING, STARTED, CANCELING]}) {
    __typename
    ... on Runs { results { runId creationTime } }
    ... on PythonError { message }
  }
}
"""
_MARK_CANCELED = """
mutation MarkCanceled($runIds: [String!]!) {
  terminateRuns(runIds: $runIds, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) {
    __typename
    ... on PythonError { message }
  }
}
"""


def cancel_orphaned_runs(settings: Settings, created_before: float) -> list[str]:
    """Mark canceled the runs a platform stopped by a kill left starting or under way; their ids.

    A run's worker is a child of the `dagster dev` that launched it and dies with it, but the run
    stays STARTED: the default run launcher has no health check, so run monitoring never notices,
    and the sensor and `build_index` would wait on it forever. Call this once the new Dagster is
    up, with the time the platform started: runs created since then are alive.
    """
    with httpx.Client(base_url=settings.dagster.url, timeout=60) as http:
        answer = _graphql(http, _UNFINISHED_RUNS)["runsOrError"]
        if answer["__typename"] != "Runs":
            raise DagsterGraphQLClientError(answer["__typename"], answer.get("message", ""))
        orphans = [run["runId"] for run in answer["results"] if run["creationTime"] < created_before]
        if orphans:
            marked = _graphql(http, _MARK_CANCELED, {"runIds": orphans})["terminateRuns"]
            if marked["__typename"] != "TerminateRunsResult":
                raise DagsterGraphQLClientError(marked["__typename"], marked.get("message", ""))
    return orphans


def run_progress(settings: Settings, run_id: str) -> Progress | None:
    """The latest embedding progress the run has reported in its event log; None before its
    embedding step reported any."""
    latest = None
    for kind, asset, values in _run_asset_events(settings, run_id):
        if kind == "ObservationEvent" and asset == [PROGRESS_ASSET]:
            latest = Progress.from_metadata(values) or latest
    return latest


def index_summary(settings: Settings, run_id: str) -> dict[str, int | float]:
    """The numbers the run's index step reported (total_chunks, indexed_documents, skipped_files,
    ...); empty if it wrote no index."""
    found: dict[str, int | float] = {}
    for kind, asset, values in _run_asset_events(settings, run_id):
        if kind == "MaterializationEvent" and asset == [INDEX_ASSET]:
            found = values
    return found

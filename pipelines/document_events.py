"""The ingestion reacts to `document.changed` events (the router's webhook) instead of waiting for the
polling sensor, which stays as the fallback.

A consumer in the code location's process (started by the sensor's first tick, not at import: every
run's process imports this module too) takes deliveries from the `ingest.documents` queue and holds
them unacknowledged. Each tick of the sensor:

1. lets go of the deliveries whose run request Dagster has recorded (a run with their batch's run key
   exists): the consumer marks their events processed and acks them;
2. turns the deliveries held and not yet requested into one run request of the ingest job: its run key
   a digest of their event ids, the changed files hashed even if their size and mtime look unchanged.

An event that names an unknown source is dead-lettered with the reason, a malformed one too (by the
consumer). A code location that restarts before the ack gets the deliveries again: the same batch has
the same run key, which Dagster does not launch twice; events processed before are acked and skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import dagster as dg

from pipelines.automation import ingest_job
from ragyard.events.consumer import Consumer, Unprocessable
from ragyard.events.schema import DocumentChanged, Event
from ragyard.events.store import EventStore
from ragyard.events.topology import DOCUMENTS, TOPOLOGY, Topology
from ragyard.settings import IngestionSettings

RUN_KEY_TAG = "dagster/run_key"
REQUEST_AGAIN_AFTER_S = 600.0


@dataclass
class Held:
    """A delivery waiting for its run request to be recorded; `done` lets the consumer ack it."""

    event: DocumentChanged
    done: asyncio.Future
    run_key: str | None = None  # set once it is part of a run request
    requested_at: float = 0.0


class DocumentInbox:
    """The consumer of the document events, in a thread of its own with its own event loop."""

    def __init__(self, settings: IngestionSettings, topology: Topology = TOPOLOGY):
        self.sources = {source.name for source in settings.ingest.sources}
        store = EventStore(settings.home / "ingest" / "events.sqlite3")
        self.consumer = Consumer(settings.broker, store, DOCUMENTS, self._hold, "ingest-documents", topology)
        self.held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        started: Future = Future()
        self.thread = threading.Thread(target=self._serve, args=(started,), name="document-events", daemon=True)
        self.thread.start()
        started.result()

    def _serve(self, started: Future) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self.consumer.start)  # it creates its tasks in the running loop
        self.loop.call_soon(started.set_result, None)
        self.loop.run_forever()

    async def _hold(self, event: Event) -> None:
        """The consumer's handler: returns (and so acks) once the event's run request is recorded."""
        assert isinstance(event, DocumentChanged)  # the queue holds document.changed only
        if event.source not in self.sources:
            raise Unprocessable(f"unknown source {event.source!r}; this ingestion has {sorted(self.sources)}")
        held = Held(event, self.loop.create_future())
        with self._lock:
            self.held[event.id] = held
        try:
            await held.done
        finally:
            with self._lock:
                self.held.pop(event.id, None)

    def unrequested(self) -> list[DocumentChanged]:
        """Events in no run request yet, or in one Dagster has not recorded for a long time (it failed
        to launch it): requested again."""
        stale = time.monotonic() - REQUEST_AGAIN_AFTER_S
        with self._lock:
            return [h.event for h in self.held.values() if h.run_key is None or h.requested_at < stale]

    def requested(self, run_key: str, event_ids: list[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                if (held := self.held.get(event_id)) is not None:
                    held.run_key, held.requested_at = run_key, time.monotonic()

    def pending_run_keys(self) -> set[str]:
        with self._lock:
            return {h.run_key for h in self.held.values() if h.run_key is not None}

    def recorded(self, run_key: str) -> None:
        """Dagster has the run: let the consumer ack the batch's deliveries."""
        with self._lock:
            batch = [h for h in self.held.values() if h.run_key == run_key]
        for held in batch:
            self.loop.call_soon_threadsafe(lambda f=held.done: f.done() or f.set_result(None))

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.consumer.close(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.consumer.store.close()


def run_key_of(events: list[DocumentChanged]) -> str:
    return "document-events-" + hashlib.sha256(" ".join(sorted(e.id for e in events)).encode()).hexdigest()[:24]


def make_document_events_sensor(settings: IngestionSettings, topology: Topology = TOPOLOGY) -> dg.SensorDefinition:
    inbox: list[DocumentInbox] = []  # started on the first tick, in the process that evaluates the sensor

    @dg.sensor(
        job=ingest_job,
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts ingestion for the files document.changed events name (the router's webhook).",
    )
    def document_events_sensor(context: dg.SensorEvaluationContext):
        if not inbox:
            inbox.append(DocumentInbox(settings, topology))
        held = inbox[0]
        for run_key in held.pending_run_keys():
            if context.instance.get_runs_count(dg.RunsFilter(tags={RUN_KEY_TAG: run_key})):
                held.recorded(run_key)
        events = held.unrequested()
        if not events:
            return dg.SkipReason("no new document events")
        run_key = run_key_of(events)
        held.requested(run_key, [e.id for e in events])
        paths = sorted({f"{e.source}:{e.path}" for e in events})
        context.log.info(f"{len(events)} document events: {paths[:20]}")
        return dg.RunRequest(
            run_key=run_key,
            run_config={"ops": {"documents": {"config": {"rehash_paths": paths}}}},
            tags={"ragyard/document_events": str(len(events))},
        )

    document_events_sensor.inbox = inbox  # type: ignore[attr-defined]  # for tests: close what it started
    return document_events_sensor

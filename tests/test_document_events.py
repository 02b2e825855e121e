"""The ingestion reacts to document.changed events: the event sensor turns them into one ingest run
request, acks them once Dagster has recorded it (not before), dead-letters events of unknown sources
with the reason, and skips an event it has processed; the run hashes the named files even when their
size and mtime look unchanged."""

import asyncio
import os
import time
import uuid

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from pipelines.document_events import RUN_KEY_TAG, make_document_events_sensor
from pipelines.materialize import asset_metadata
from ragyard.events.schema import DocumentChanged, encode
from ragyard.events.store import EventStore
from ragyard.events.topology import DEAD_REASON_HEADER, DOCUMENTS, Topology
from ragyard.settings import IngestSettings, Settings, SourceSettings
from tests.broker_support import drain
from tests.conftest import run_ingest
from tests.corpus import write_corpus
from tests.test_events import raw_publish


def test_a_file_named_by_an_event_is_hashed_though_its_size_and_mtime_look_unchanged(settings, corpus):
    [first, *_] = write_corpus(corpus, count=2)
    run_ingest(settings)
    stat = first.stat()
    first.write_text(first.read_text().replace("Paragraph 0", "Paragraph Z"))  # same size
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    trusted = run_ingest(settings)
    assert asset_metadata(trusted, "documents")["changed_documents"] == 0
    named = run_ingest(settings, {"ops": {"documents": {"config": {
        "rehash_paths": [f"docs:{first.relative_to(corpus).as_posix()}"]}}}})
    assert asset_metadata(named, "documents")["changed_documents"] == 1


def test_document_events_become_one_run_request_acked_once_dagster_recorded_it(event_broker, tmp_path):
    topology = Topology(prefix=f"t{uuid.uuid4().hex[:8]}", retry_delays_s=(0.2,))
    url = event_broker.config.amqp_url
    settings = Settings(home=tmp_path / "home", broker=event_broker.config,
                        ingest=IngestSettings(sources=[SourceSettings(name="docs", path=tmp_path / "docs")]))
    changed = [DocumentChanged(producer="test", source="docs", path=p) for p in ("a.md", "guide/b.md")]
    stranger = DocumentChanged(producer="test", source="elsewhere", path="c.md")
    sensor = make_document_events_sensor(settings, topology)
    instance = dg.DagsterInstance.ephemeral()
    tick = lambda: sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    try:
        assert tick().run_requests == []  # starts the consumer; nothing has come yet
        deadline = time.monotonic() + 60
        while not sensor.inbox[0].consumer.link.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)  # it has declared the topology

        async def publish(*events):
            for event in events:
                await raw_publish(url, topology.exchange, event.routing_key, encode(event), event.id)
        asyncio.run(publish(*changed, stranger))

        deadline = time.monotonic() + 60
        while len(sensor.inbox[0].unrequested()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both delivered and held
        [request] = tick().run_requests
        assert request.run_config["ops"]["documents"]["config"]["rehash_paths"] == ["docs:a.md", "docs:guide/b.md"]
        assert sensor.job_name == "ingest" and request.tags["ragyard/document_events"] == "2"

        store = EventStore(settings.home / "ingest" / "events.sqlite3")
        queue = topology.queue(DOCUMENTS)
        # Not recorded yet: held, neither acked nor requested again.
        assert tick().run_requests == []
        assert not any(store.processed(queue, e.id) for e in changed)
        # The daemon records the run; the next tick acks the events.
        instance.add_run(DagsterRun(job_name="ingest", run_id=uuid.uuid4().hex, tags={RUN_KEY_TAG: request.run_key}))
        tick()
        deadline = time.monotonic() + 30
        while not all(store.processed(queue, e.id) for e in changed) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(store.processed(queue, e.id) for e in changed)

        asyncio.run(publish(changed[0]))  # delivered again: processed already, no new run
        time.sleep(2)
        assert tick().run_requests == []
        [dead] = asyncio.run(drain(url, topology.dead_letters))
        assert dead.message_id == stranger.id
        assert dead.headers[DEAD_REASON_HEADER] == ("unprocessable: unknown source 'elsewhere'; "
                                                     "this ingestion has ['docs']")
        assert asyncio.run(drain(url, queue)) == []  # every delivery acked
    finally:
        for inbox in sensor.inbox:
            inbox.close()
        instance.dispose()

"""The event outbox and processed ids on both state databases (a SQLite file, a real PostgreSQL):
rows stay until confirmed, a claim holds rows for one relay, relays sharing an outbox never hold the
same row, an event id is stored once."""

import concurrent.futures
import time

import pytest

from ragyard.events.store import EventStore
from tests.conftest import new_database


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    database = new_database(request.getfixturevalue("postgres")) if request.param == "postgres" \
        else tmp_path / "events.sqlite3"
    store = EventStore(database)
    yield store
    store.close()


def test_rows_stay_until_confirmed_and_a_claim_holds_them_for_its_lease(store):
    for n in range(5):
        store.add(f"e{n}", "feedback.scored", b'{"n": %d}' % n)
    store.add("e0", "feedback.scored", b"again")  # the same event id: stored once
    assert store.backlog()[0] == 5 and store.backlog()[1] >= 0
    first = store.claim(limit=3, lease_s=60)
    assert [r.event_id for r in first] == ["e0", "e1", "e2"] and first[0].body == b'{"n": 0}'
    assert [r.event_id for r in store.claim(limit=10, lease_s=60)] == ["e3", "e4"]
    assert store.claim(limit=10, lease_s=60) == []  # all held
    store.remove([first[0].seq])
    store.release([r.seq for r in first[1:]])  # not confirmed: free again at once
    assert [r.event_id for r in store.claim(limit=10, lease_s=0.01)] == ["e1", "e2"]
    time.sleep(0.05)  # the lease ran out: another relay may take them
    assert [r.event_id for r in store.claim(limit=10, lease_s=60)] == ["e1", "e2"]
    assert store.backlog()[0] == 4


def test_relays_sharing_an_outbox_never_hold_the_same_row(store):
    for n in range(200):
        store.add(f"e{n}", "feedback.scored", b"{}")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [r.event_id for r in store.claim(limit=30, lease_s=60)], range(8)))
    claimed = [event_id for batch in batches for event_id in batch]
    assert len(claimed) == len(set(claimed)) == 200


def test_processed_ids_are_kept_per_consumer_and_forgotten_when_old(store):
    store.mark_processed("q1", "e1")
    store.mark_processed("q1", "e1")  # twice: no error
    assert store.processed("q1", "e1") and not store.processed("q2", "e1")
    assert store.forget_processed(older_than_s=3600) == 0
    time.sleep(0.05)
    assert store.forget_processed(older_than_s=0.01) == 1 and not store.processed("q1", "e1")

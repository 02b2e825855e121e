"""The memory bento's store: rows and vectors in step, the per-user bound, expiry, a decision gone stale,
and a delete that leaves nothing, against the session's milvus-lite and both SQLite and a real PostgreSQL."""

from __future__ import annotations

import time
import uuid

import pytest

from bentos.memory.rows import MemoryRows, Owner, text_digest
from bentos.memory.store import DeleteOp, Embedded, MemoryStore, StaleNeighbours, UpdateOp
from bentos.memory.vectors import MemoryVectors
from tests.support.databases import new_database

# ---- the store: Milvus and the database in step -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path, milvus_uri):
    database = (
        tmp_path / "memories.sqlite3"
        if request.param == "sqlite"
        else new_database(request.getfixturevalue("postgres"))
    )
    rows = MemoryRows(database)
    vectors = MemoryVectors(milvus_uri, "", f"t_{uuid.uuid4().hex[:12]}", 3, 30.0)
    yield MemoryStore(rows, vectors, max_per_user=3, duplicate_similarity=0.95)
    vectors.client().drop_collection(vectors.name)
    rows.close()


def unit(*xs: float) -> list[float]:
    norm = sum(x * x for x in xs) ** 0.5
    return [x / norm for x in xs]


def counts(store: MemoryStore, owner: Owner) -> tuple[int, int]:
    """(rows, vectors) of the user, read from the database and from Milvus."""
    return store.rows.count_all(owner), store.vectors.count_owner(owner)


def test_the_bound_evicts_the_least_recently_used_in_both_stores(store):
    alice, now = Owner("s", "alice"), time.time()
    directions = [unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1), unit(1, 1, 0)]
    # Said in the past, in this order; each counts as used when it was stored.
    added = [
        store.add(alice, Embedded(f"fact {i}", v), "text", now - 100 + i, now + 3600) for i, v in enumerate(directions)
    ]
    assert [a.status for a in added] == ["added"] * 4
    assert added[3].evicted == [added[0].row.id]  # the oldest, never used since
    assert counts(store, alice) == (3, 3)
    store.search(alice, "dense", "", unit(0, 1, 0), 1)  # fact 1 is used now
    fifth = store.add(alice, Embedded("fact 4", unit(1, 0, 1)), "text", now, now + 3600)
    assert fifth.evicted == [added[2].row.id]  # fact 2 is now the least recently used, not fact 1
    assert store.add(alice, Embedded("FACT  4", unit(0, 1, 1)), "text", now, now + 3600).status == "duplicate"
    assert store.add(alice, Embedded("same meaning", unit(1, 0, 1)), "text", now, now + 3600).status == "duplicate"


def test_users_and_scopes_never_see_each_other(store):
    now = time.time()
    store.add(Owner("s", "alice"), Embedded("alice's fact", unit(1, 0, 0)), "text", now, now + 3600)
    for other in (Owner("s", "bob"), Owner("t", "alice")):
        assert store.search(other, "hybrid", "alice's fact", unit(1, 0, 0), 5) == []
        assert store.rows.page(other, now, 10, 0) == ([], 0)


def test_expired_memories_are_hidden_then_purged_from_both_stores(store):
    alice, now = Owner("s", "alice"), time.time()
    store.add(alice, Embedded("soon gone", unit(1, 0, 0)), "text", now, now + 1)
    kept = store.add(alice, Embedded("kept", unit(0, 1, 0)), "text", now, now + 3600).row
    time.sleep(1.5)
    assert [row.id for row, _ in store.search(alice, "dense", "", unit(1, 0, 0), 5)] == [kept.id]
    assert store.purge_expired() == 1
    assert counts(store, alice) == (1, 1)


def test_a_decision_about_a_memory_that_changed_meanwhile_is_refused_whole(store):
    alice, now = Owner("s", "alice"), time.time()
    paris = store.add(alice, Embedded("User lives in Paris.", unit(1, 0, 0)), "extraction", now, now + 3600).row
    tea = store.add(alice, Embedded("User likes tea.", unit(0, 1, 0)), "extraction", now, now + 3600).row
    store.update(alice, tea.id, Embedded("User likes coffee.", unit(0, 1, 1)), None)  # a concurrent edit
    plan = [
        UpdateOp(paris.id, text_digest(paris.text), Embedded("User lives in Berlin.", unit(1, 0.1, 0))),
        DeleteOp(tea.id, text_digest("User likes tea.")),
    ]
    with pytest.raises(StaleNeighbours):
        store.apply(alice, plan, "extraction", now, now + 3600)
    assert store.rows.get(alice, paris.id, time.time()).text == "User lives in Paris."  # nothing applied
    applied = store.apply(
        alice, plan[:1] + [DeleteOp(tea.id, text_digest("User likes coffee."))], "extraction", now, now + 7200
    )
    assert [(a.op, a.text) for a in applied] == [("update", "User lives in Berlin."), ("delete", "User likes coffee.")]
    assert counts(store, alice) == (1, 1)
    hits = store.search(alice, "bm25", "Berlin", None, 5)
    assert [row.text for row, _ in hits] == ["User lives in Berlin."]


def test_deleting_a_user_leaves_no_row_and_no_vector(store):
    alice, bob, now = Owner("s", "alice"), Owner("s", "bob"), time.time()
    for i in range(3):
        store.add(alice, Embedded(f"alice {i}", unit(1, i, 0)), "text", now, now + 3600)
    store.add(bob, Embedded("bob", unit(0, 0, 1)), "text", now, now + 3600)
    assert store.delete_owner(alice) == 3
    assert counts(store, alice) == (0, 0)
    assert counts(store, bob) == (1, 1)
    assert store.delete_owner(alice) == 0  # idempotent

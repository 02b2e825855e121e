"""The router's state stores on both backends, SQLite files and a real PostgreSQL server: key store,
limits under threads, caches, memory (the router's stateless parts: tests/unit)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ragyard.settings import RouterSettings, Settings
from router.cache import ResponseCache
from router.keys import COMPLETION_RETENTION_S, KeyStore
from router.limits import LimitExceeded, Limits
from router.memory import Memory
from router.state import database, query
from tests.support.databases import new_database


@pytest.fixture(params=["sqlite", "postgres"])
def state(request, tmp_path) -> Settings:
    """Settings whose router state is in SQLite files under a fresh home, or in a fresh Postgres database."""
    url = new_database(request.getfixturevalue("postgres")) if request.param == "postgres" else ""
    return Settings(home=tmp_path / "home", router=RouterSettings(state_url=url))


@pytest.fixture
def store(state):
    store = KeyStore(database(state, "keys"))
    yield store
    store.close()


def test_keys_authenticate_only_the_exact_secret_and_not_after_revoking(store):
    key, secret = store.create("app", budget=1.0, rpm=10)
    assert store.authenticate(secret).id == key.id
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.authenticate(f"rg-deadbeef-{secret.split('-', 2)[2]}") is None
    assert store.authenticate("not a key") is None
    assert store.revoke(key.id) and not store.revoke(key.id)
    assert store.authenticate(secret) is None


def test_concurrent_reservations_never_exceed_the_budget(state):
    # Two stores on one database: two router processes (or replicas) share the budget.
    stores = [KeyStore(database(state, "keys")) for _ in range(2)]
    key, _ = stores[0].create("app", budget=1.0)
    limits = [Limits(s) for s in stores]

    def request(i: int) -> float:
        try:
            reservation = limits[i % 2].reserve(key.id, worst_cost=0.3, tokens=10)
        except LimitExceeded:
            return 0.0
        time.sleep(0.01)
        limits[i % 2].settle(reservation, cost=0.25, tokens=10)
        return 0.25

    with ThreadPoolExecutor(16) as pool:
        charged = sum(pool.map(request, range(64)))
    spent = stores[0].get(key.id).spent
    assert spent == pytest.approx(charged) and spent <= 1.0
    assert spent >= 0.5  # budget was used, not refused wholesale
    with pytest.raises(LimitExceeded) as refused:
        limits[0].reserve(key.id, worst_cost=1.0 - spent + 1e-9, tokens=1)
    assert refused.value.code == "insufficient_quota" and refused.value.retry_after_s is None
    for store in stores:
        store.close()


def test_request_and_token_windows_slide(store):
    key, _ = store.create("app", rpm=2, tpm=100)
    limits = Limits(store)
    now = 1_000_000.0
    first = limits.reserve(key.id, 0.0, 30, now=now)
    limits.reserve(key.id, 0.0, 30, now=now + 1)
    with pytest.raises(LimitExceeded) as rpm:
        limits.reserve(key.id, 0.0, 30, now=now + 2)
    assert rpm.value.code == "rate_limit_exceeded" and rpm.value.retry_after_s == pytest.approx(58)
    assert limits.reserve(key.id, 0.0, 30, now=now + 61)  # the first request left the window
    limits.settle(first, 0.0, 90)  # the real count replaces the estimate
    with pytest.raises(LimitExceeded) as too_big:
        limits.reserve(key.id, 0.0, 101, now=now + 62)
    assert too_big.value.code == "tokens_exceed_limit" and too_big.value.retry_after_s is None


def test_a_reservation_records_which_key_owns_the_answer(store):
    first, _ = store.create("app")
    second, _ = store.create("other")
    limits = Limits(store)
    now = 1_000_000.0
    limits.reserve(first.id, 0.0, 1, now=now, completion_id="t1")
    assert store.completion_owner("t1", now) == first.id and store.completion_owner("t2", now) is None
    limits.reserve(second.id, 0.0, 1, now=now + 1, completion_id="t1")  # the same id again: the last owner
    assert store.completion_owner("t1", now + 1) == second.id
    later = now + 1 + COMPLETION_RETENTION_S + 1
    assert store.completion_owner("t1", later) is None  # expired, whether or not its row was cleaned up yet
    limits.reserve(second.id, 0.0, 1, now=later, completion_id="t2")  # cleans up the key's expired rows
    assert [
        r[0] for r in query(store.engine, "SELECT trace_id FROM completions WHERE key_id = :key", key=second.id)
    ] == ["t2"]


def test_stores_starting_together_on_one_postgres_database_all_start(postgres):
    # Replicas start at once and each creates the tables it needs: none may fail on the others' DDL.
    url = new_database(postgres)
    barrier = threading.Barrier(6)

    def start(_):
        barrier.wait()
        stores = [KeyStore(url), ResponseCache(url, 10, 10, 0.9), Memory(url, 2, 10)]
        for store in stores:
            store.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, range(6)))
    store = KeyStore(url)
    assert store.create("after")[0].name == "after"
    store.close()


def test_caches_respect_scope_threshold_ttl_and_size(state):
    cache = ResponseCache(database(state, "cache"), ttl_s=10, max_entries=3, threshold=0.9)
    v = np.array([1.0, 0.0], dtype=np.float32)
    cache.put("k1", "scope-a", "what is a list", v, {"text": "A list."}, now=100)
    assert cache.exact("k1", now=105).payload == {"text": "A list."}
    assert cache.exact("k1", now=111) is None  # expired
    near = np.array([0.95, np.sqrt(1 - 0.95**2)], dtype=np.float32)
    far = np.array([0.5, np.sqrt(0.75)], dtype=np.float32)
    hit = cache.semantic("scope-a", near, now=105)
    assert hit.kind == "semantic" and hit.similarity == pytest.approx(0.95, abs=1e-5)
    assert cache.semantic("scope-a", far, now=105) is None
    assert cache.semantic("scope-b", v, now=105) is None  # another model, parameters or index version
    for i in range(2, 6):
        cache.put(f"k{i}", "scope-a", f"q{i}", None, {"text": str(i)}, now=106)
    assert cache.exact("k1", now=106) is None and cache.exact("k5", now=106) is not None  # bounded
    cache.close()


def test_memory_keeps_the_last_turns_per_session_and_key(state):
    memory = Memory(database(state, "memory"), max_turns=2, max_sessions=10)
    for i in range(3):
        memory.append("s1", "key-a", f"q{i}", f"a{i}")
    assert [m["content"] for m in memory.history("s1", "key-a")] == ["q1", "a1", "q2", "a2"]
    assert memory.history("s1", "key-b") == []  # another key never sees the session
    memory.close()

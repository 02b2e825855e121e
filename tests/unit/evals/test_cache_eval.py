"""The cache eval: its hand-written data, the router's keys, and each replay as the router's cache decides it."""

import collections
import json

import numpy as np
import pytest

from evals.cache_datasets import (
    FOLLOW_UP,
    NEAR_MISS,
    NEAR_MISSES,
    OPENING,
    PARAPHRASE,
    PARAPHRASES,
    QUESTION,
    SESSIONS,
    Asked,
    Session,
    load_near_misses,
    load_paraphrases,
    load_sessions,
)
from evals.cache_replays import (
    Replay,
    history_blind_keys,
    replay_sessions,
    router_keys,
    zipf_traffic,
)
from evals.retrieval import DEFAULT_DATASET, DatasetError, Gold, load_dataset

A, B, C = (Gold("docs:a", "Intro"),), (Gold("docs:b", "Usage"),), (Gold("docs:c", "Walk"),)


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def asked(id_: str, question: str, gold, kind: str = QUESTION) -> Asked:
    return Asked(id_, question, gold, id_, kind)


# ---- the data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def questions():
    return load_dataset(DEFAULT_DATASET)


def test_paraphrases_cover_every_question_several_times_and_take_their_gold(questions):
    paraphrases = load_paraphrases(questions)  # raises on an `of` that is not a question id
    by_id = {q.id: q for q in questions}
    assert len(paraphrases) >= 300
    per_question = collections.Counter(p.of for p in paraphrases)
    assert set(per_question) == set(by_id) and min(per_question.values()) >= 2
    for p in paraphrases:
        assert p.kind == PARAPHRASE and p.gold == by_id[p.of].gold and p.id.startswith(f"{p.of}~p")


def test_near_misses_look_like_one_question_and_need_another_ones_answer(questions):
    near = load_near_misses(questions)  # raises on unknown ids, or on `like` and `of` sharing a gold section
    by_id = {q.id: q for q in questions}
    assert len(near) >= 60
    for n in near:
        assert n.kind == NEAR_MISS and n.like in by_id and n.gold == by_id[n.of].gold
        assert not {(g.doc_id, g.section) for g in by_id[n.like].gold} & n.sections


def test_sessions_have_follow_ups_that_need_their_context(questions):
    sessions = load_sessions(questions)
    assert len(sessions) >= 20 and all(2 <= len(s.turns) <= 3 for s in sessions)
    assert all(s.turns[0].kind == OPENING and {t.kind for t in s.turns[1:]} == {FOLLOW_UP} for s in sessions)
    # The same follow-up text needs different answers in different conversations ...
    meanings = collections.defaultdict(set)
    for s in sessions:
        for t in s.turns[1:]:
            meanings[t.question].add(t.of)
    assert sum(len(ofs) > 1 for ofs in meanings.values()) >= 4
    # ... and some sessions open alike, so their follow-ups come after a shared history.
    openings = collections.Counter(s.turns[0].question for s in sessions)
    assert max(openings.values()) >= 3


def test_every_text_is_asked_by_one_row_only(questions):
    texts = [q.question for q in questions] + [
        a.question for a in load_paraphrases(questions) + load_near_misses(questions)
    ]
    assert len({t.strip().lower() for t in texts}) == len(texts)


@pytest.mark.parametrize(
    ("name", "line", "error"),
    [
        ("paraphrases", {"id": "x~p1", "of": "no-such-question", "question": "q"}, "of 'no-such-question'"),
        ("near_misses", {"id": "x~n1", "like": "no-such-question", "of": "os-walk", "question": "q"}, "like"),
        ("near_misses", {"id": "x~n1", "like": "os-walk", "of": "os-walk", "question": "q"}, "share a gold section"),
        ("sessions", {"id": "s", "turns": [{"question": "q", "of": "os-walk"}]}, "at least two turns"),
        (
            "sessions",
            {"id": "s", "turns": [{"question": "q", "of": "os-walk"}, {"question": " ", "of": "os-walk"}]},
            "empty or missing question",
        ),
    ],
)
def test_bad_rows_are_refused_naming_the_line(tmp_path, questions, name, line, error):
    loaders = {"paraphrases": load_paraphrases, "near_misses": load_near_misses, "sessions": load_sessions}
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n" + json.dumps(line) + "\n")
    with pytest.raises(DatasetError, match=rf"{name}.jsonl:2: .*{error}"):
        loaders[name](questions, path)


def test_the_shipped_files_are_the_ones_loaded():
    assert {PARAPHRASES.name, NEAR_MISSES.name, SESSIONS.name} == {
        "python_docs_paraphrases.jsonl",
        "python_docs_near_misses.jsonl",
        "python_docs_sessions.jsonl",
    }
    assert all(p.parent == DEFAULT_DATASET.parent for p in (PARAPHRASES, NEAR_MISSES, SESSIONS))


# ---- the router's keys ----------------------------------------------------------------------------


def test_router_keys_scope_by_conversation_and_key_exactly_by_messages():
    q = [{"role": "user", "content": "and recursively?"}]
    turn = [{"role": "user", "content": "list a folder"}, {"role": "assistant", "content": "os.listdir"}]
    other = [{"role": "user", "content": "find .py files"}, {"role": "assistant", "content": "Path.glob"}]
    scope, exact = router_keys([], q)
    assert router_keys([], q) == (scope, exact)  # deterministic
    assert router_keys([], [{"role": "user", "content": "other"}])[0] == scope  # one scope for first turns
    assert router_keys([], [{"role": "user", "content": "other"}])[1] != exact
    with_memory, with_context = router_keys(turn, q)[0], router_keys([], [*turn, *q])[0]
    assert len({scope, with_memory, with_context, router_keys(other, q)[0], router_keys([], [*other, *q])[0]}) == 5
    assert history_blind_keys(turn, [*turn, *q]) == (scope, exact)


# ---- replays --------------------------------------------------------------------------------------


def test_replay_serves_exact_then_semantic_hits_and_judges_them_by_gold(tmp_path):
    requests = [
        asked("1", "how do I open a file", A),
        asked("2", "opening files?", A),  # near 1, same section: a true semantic hit
        asked("3", "how do I close a socket", B),  # near 1 too, other section: a false hit
        asked("4", "what is a socket", B),  # far from all: a miss, though B was asked before
        asked("5", "how do I open a file", A),
    ]  # 1 again: an exact hit
    vectors = {
        "how do I open a file": unit(1, 0, 0),
        "opening files?": unit(1, 0.1, 0),
        "how do I close a socket": unit(1, 0, 0.2),
        "what is a socket": unit(0, 0, 1),
    }
    replay = Replay(tmp_path / "c.sqlite3", 0.95, vectors)
    served = [replay.ask(r)[0] for r in requests]
    assert [s.result for s in served] == ["miss", "semantic", "semantic", "miss", "exact"]
    assert [s.false for s in served] == [False, False, True, False, False]
    assert [s.reusable for s in served] == [False, True, False, True, True]
    assert served[2].cached_id == "1" and served[2].similarity == pytest.approx(float(unit(1, 0, 0.2)[0]))

    strict = Replay(tmp_path / "strict.sqlite3", 0.999, vectors)
    assert [strict.ask(r)[0].result for r in requests] == ["miss", "miss", "miss", "miss", "exact"]


def test_sessions_never_share_answers_across_conversations_unless_the_scope_forgets_them(tmp_path):
    again = "and recursively?"
    vectors = {
        "list a folder": unit(1, 0, 0),
        "find .py files": unit(0, 1, 0),
        again: unit(0, 0, 1),
        "including subfolders?": unit(0, 0.1, 1),
    }

    def session(id_, *turns):
        return Session(
            id_,
            tuple(
                Asked(f"{id_}#{i}", q, gold, id_, OPENING if i == 1 else FOLLOW_UP)
                for i, (q, gold) in enumerate(turns, start=1)
            ),
        )

    sessions = [
        session("walk-1", ("list a folder", A), (again, C)),
        session("glob-1", ("find .py files", B), (again, B)),  # same words, other meaning
        session("walk-2", ("list a folder", A), (again, C)),  # shares walk-1's history
        session("walk-3", ("list a folder", A), ("including subfolders?", C)),
    ]
    for stateless in (False, True):
        served = replay_sessions(Replay(tmp_path / f"{stateless}.sqlite3", 0.95, vectors), sessions, stateless)
        by_id = {s.asked.id: s for s in served}
        assert not any(s.other_conversation for s in served)
        assert by_id["glob-1#2"].result == "miss"
        assert by_id["walk-2#1"].result == by_id["walk-2#2"].result == "exact"
        assert by_id["walk-2#2"].shared_history and not by_id["glob-1#2"].shared_history
        assert by_id["walk-3#2"].result == "semantic" and not by_id["walk-3#2"].false

    blind = replay_sessions(Replay(tmp_path / "blind.sqlite3", 0.95, vectors, history_blind_keys), sessions, False)
    glob = next(s for s in blind if s.asked.id == "glob-1#2")
    assert glob.result == "exact" and glob.other_conversation and glob.false


def test_traffic_is_seeded_and_favours_popular_topics():
    phrasings = {
        f"t{i}": [asked(f"t{i}", f"question {i}", A), asked(f"t{i}~p1", f"paraphrase {i}", A)] for i in range(50)
    }
    traffic = zipf_traffic(phrasings, 1000, seed=7)
    assert traffic == zipf_traffic(phrasings, 1000, seed=7) and traffic != zipf_traffic(phrasings, 1000, seed=8)
    counts = sorted(collections.Counter(a.of for a in traffic).values(), reverse=True)
    assert len(traffic) == 1000 and counts[0] > 10 * counts[len(counts) // 2]
    assert len({a.question for a in traffic}) > 50  # several phrasings of a topic are asked


# ---- the eval -------------------------------------------------------------------------------------


def test_quick_eval_reports_every_part_per_threshold(tmp_path):
    from evals.cache import evaluate, load_all, thresholds
    from ragyard.settings import Settings

    settings = Settings(home=tmp_path / "home")
    report = evaluate(settings, quick=True)
    tuning = [r for r in report.runs if r.params["split"] == "tuning"]
    held = {r.name: r for r in report.runs if r.params["split"] == "held-out"}
    assert [r.params["threshold"] for r in tuning] == thresholds(settings.router.semantic_threshold)
    # Every question is on one side only; the held-out side is replayed with the exact cache alone and at
    # the threshold the tuning side chose.
    assert tuning[0].params["questions"] + next(iter(held.values())).params["questions"] == len(load_all(True)[1])
    assert min(tuning[0].params["questions"], next(iter(held.values())).params["questions"]) >= 5
    chosen = min(r.params["threshold"] for r in tuning if r.metrics["false_hits_total"] == 0)
    assert set(held) == {"held-out-exact-only", f"held-out-semantic-{chosen:.2f}"}
    exact_only = held["held-out-exact-only"].metrics
    assert exact_only["traffic_semantic_hit_rate"] == 0 == exact_only["false_hits_total"]
    semantic = held[f"held-out-semantic-{chosen:.2f}"].metrics
    low_ci, high_ci = semantic["traffic_semantic_hit_rate_low"], semantic["traffic_semantic_hit_rate_high"]
    assert low_ci <= semantic["traffic_semantic_hit_rate"] <= high_ci
    assert "**Held out**" in report.summary_markdown and f"At {chosen:.2f}, chosen on the tuning split" in (
        report.summary_markdown
    )
    low, high = tuning[0].metrics, tuning[-1].metrics
    for m in (low, high):
        assert m["traffic_requests"] == 300 and m["sessions_followups"] >= 20
        assert m["sessions_followup_other_conversation_hits"] == m["stateless_followup_other_conversation_hits"] == 0
        assert m["blind_followup_other_conversation_hits"] > 0  # the sessions do need their history
        assert m["traffic_exact_hit_rate"] > 0.3  # popular questions repeat word for word
    # A lower threshold hits more, and serves more wrong answers.
    assert low["paraphrase_hit_rate"] > high["paraphrase_hit_rate"]
    assert low["false_hits_total"] > high["false_hits_total"] == 0
    assert low["false_hits_total"] == len(tuning[0].tables["false_hits"])
    assert "The figures support" in report.summary_markdown and "| threshold |" in report.summary_markdown

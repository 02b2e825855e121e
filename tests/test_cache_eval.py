"""The semantic-cache eval counts hits, false hits and the reuse ceiling as the router's cache decides them."""

import numpy as np

from evals.cache import replay
from evals.retrieval import Gold, Question


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_replay_counts_true_and_false_hits_against_the_gold_sections():
    a, b = Gold("docs:a", "Intro"), Gold("docs:b", "Usage")
    questions = [Question("1", "how do I open a file", (a,)),
                 Question("2", "opening files?", (a,)),           # near 1, same section: a true hit
                 Question("3", "how do I close a socket", (b,)),  # near 1 too, other section: a false hit
                 Question("4", "what is a socket", (b,))]         # far from all: a miss; section b seen before
    vectors = np.stack([unit(1, 0, 0), unit(1, 0.1, 0), unit(1, 0, 0.2), unit(0, 0, 1)])
    metrics = replay(questions, vectors, threshold=0.95)
    assert metrics["hits"] == 2 and metrics["hit_rate"] == 0.5
    assert metrics["false_hit_rate"] == 0.5 and metrics["false_hits_per_question"] == 0.25
    assert metrics["reuse_ceiling"] == 0.5  # questions 2 and 4 had their section asked before

    strict = replay(questions, vectors, threshold=0.999)
    assert strict["hits"] == 0 and strict["false_hit_rate"] == 0.0


def test_paraphrases_follow_their_originals_and_take_their_gold():
    from evals.cache import PARAPHRASES, with_paraphrases
    from evals.retrieval import DEFAULT_DATASET, load_dataset

    questions = load_dataset(DEFAULT_DATASET)
    replayed = with_paraphrases(questions)
    by_id = {q.id: q for q in questions}
    added = replayed[len(questions):]
    assert len(added) == len(PARAPHRASES.read_text().splitlines()) >= 30
    for paraphrase in added:
        original = by_id[paraphrase.id.removesuffix("~p")]
        assert paraphrase.gold == original.gold and paraphrase.question != original.question

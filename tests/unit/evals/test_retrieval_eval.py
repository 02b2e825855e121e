"""The retrieval eval: metrics by hand, and the shipped dataset against the docs (a real run through the
harness logged to MLflow: tests/integration)."""

import math

import pytest

from evals.metrics import ndcg_at_k, recall_at_k, reciprocal_rank_at_k
from evals.retrieval import (
    DEFAULT_DATASET,
    Gold,
    gold_match,
    load_dataset,
    quick_subset,
)
from ragyard.settings import PYTHON_DOCS, ChunkerSettings

# ---- (a) metrics, computed by hand --------------------------------------------------------------


def test_metrics_with_two_gold_entries_and_a_duplicate_hit():
    # ranks: 1 miss, 2 gold#0, 3 miss, 4 gold#0 again (no new credit), 5 gold#1
    ranked = [None, 0, None, 0, 1]
    assert recall_at_k(ranked, 2, 3) == 0.5
    assert recall_at_k(ranked, 2, 5) == 1.0
    assert reciprocal_rank_at_k(ranked, 10) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, 2, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, 2, 10) == pytest.approx(0.624051, abs=1e-6)


def test_metrics_when_nothing_is_relevant_or_the_hit_is_beyond_the_cut_off():
    assert recall_at_k([None] * 10, 1, 10) == 0.0
    assert reciprocal_rank_at_k([None] * 10, 10) == 0.0
    assert ndcg_at_k([None] * 10, 1, 10) == 0.0
    late = [None] * 10 + [0]
    assert recall_at_k(late, 1, 10) == 0.0 and reciprocal_rank_at_k(late, 10) == 0.0
    assert recall_at_k([None, None, 0], 1, 5) == 1.0
    assert reciprocal_rank_at_k([None, None, 0], 10) == pytest.approx(1 / 3)
    assert ndcg_at_k([None, None, 0], 1, 10) == pytest.approx(0.5)  # 1/log2(4) over 1


def test_ideal_dcg_is_capped_at_ten_gold_entries():
    perfect = list(range(10))
    assert ndcg_at_k(perfect, 12, 10) == pytest.approx(1.0)
    assert recall_at_k(perfect, 12, 10) == pytest.approx(10 / 12)
    assert ndcg_at_k([0], 1, 10) == 1.0


def test_a_hit_is_relevant_by_doc_id_and_section_substring():
    gold = (
        Gold("python-docs:library/os.path.rst.txt", "abspath(path)"),
        Gold("python-docs:faq/design.rst.txt", "switch"),
    )
    assert (
        gold_match(
            {
                "doc_id": "python-docs:library/os.path.rst.txt",
                "section": "os.path --- Common pathname manipulations > abspath(path)",
            },
            gold,
        )
        == 0
    )
    assert (
        gold_match(
            {
                "doc_id": "python-docs:faq/design.rst.txt",
                "section": "Design and History FAQ > Why isn't there a switch or case statement in Python?",
            },
            gold,
        )
        == 1
    )
    # the right section in another document, or another section of the right document, is not relevant
    assert gold_match({"doc_id": "python-docs:library/os.rst.txt", "section": "x > abspath(path)"}, gold) is None
    assert (
        gold_match({"doc_id": "python-docs:library/os.path.rst.txt", "section": "os.path > join(path)"}, gold) is None
    )


def test_metrics_refuse_a_question_without_gold():
    with pytest.raises(ValueError):
        recall_at_k([0], 0, 10)


# ---- (b) the shipped dataset against the Python docs ------------------------------------------


def test_dataset_is_well_formed_and_spread():
    questions = load_dataset(DEFAULT_DATASET)
    assert len(questions) >= 110
    folders = {g.doc_id.split(":", 1)[1].split("/")[0] for q in questions for g in q.gold}
    assert {"library", "tutorial", "faq", "reference", "howto"} <= folders
    assert len({g.doc_id for q in questions for g in q.gold}) >= 50
    assert all(g.doc_id.startswith("python-docs:") for q in questions for g in q.gold)


@pytest.mark.skipif(
    not PYTHON_DOCS.is_dir(),
    reason=f"the Python 3.11 docs ({PYTHON_DOCS}) are not installed (Debian package python3.11-doc)",
)
def test_every_gold_section_is_a_chunk_section_of_its_document():
    from pipelines.chunking import chunk_document
    from pipelines.sources import SourceFile, parse_document, read_bytes

    sections: dict[str, list[str]] = {}
    missing = []
    for question in load_dataset(DEFAULT_DATASET):
        for gold in question.gold:
            if gold.doc_id not in sections:
                relative = gold.doc_id.split(":", 1)[1]
                path = PYTHON_DOCS / relative
                if not path.is_file():
                    missing.append(f"{question.id}: no file {path}")
                    sections[gold.doc_id] = []
                    continue
                stat = path.stat()
                file = SourceFile("python-docs", relative, path, stat.st_size, stat.st_mtime_ns)
                document = parse_document(file, read_bytes(file, 8_000_000), "-")
                sections[gold.doc_id] = [c.section for c in chunk_document(document, ChunkerSettings())]
            if sections[gold.doc_id] and not any(gold.section in s for s in sections[gold.doc_id]):
                missing.append(f"{question.id}: no chunk of {gold.doc_id} has a section containing {gold.section!r}")
    assert not missing, "\n".join(missing)


def test_quick_is_every_fourth_question_of_the_shipped_set():
    questions = load_dataset(DEFAULT_DATASET)
    quick = quick_subset(questions)
    assert len(quick) == len(range(0, len(questions), 4)) and quick[1] is questions[4]

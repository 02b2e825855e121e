"""The answer eval's question set: well formed, spread, and its gold sections are real chunk sections
(a quick run with SmolLM2 on a real index: tests/integration)."""

from __future__ import annotations

import pytest

from evals.answers import load_qa_dataset
from evals.retrieval import DatasetError
from ragyard.settings import PYTHON_DOCS, ChunkerSettings

needs_docs = pytest.mark.skipif(
    not PYTHON_DOCS.is_dir(),
    reason=f"the Python 3.11 docs ({PYTHON_DOCS}) are not installed (Debian package python3.11-doc)",
)


def test_qa_dataset_is_well_formed_and_spread():
    items = load_qa_dataset()
    assert len(items) >= 60
    assert all(len(item.reference.split()) >= 3 for item in items)
    folders = {g.doc_id.split(":", 1)[1].split("/")[0] for item in items for g in item.gold}
    assert {"library", "tutorial", "faq", "reference", "howto"} <= folders


def test_qa_dataset_refuses_a_line_without_an_answer(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "x", "question": "q?", "gold": [{"doc_id": "d", "section": "s"}]}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match="qa.jsonl:1: no reference `answer`"):
        load_qa_dataset(path)


@needs_docs
def test_every_gold_section_of_the_qa_set_is_a_chunk_section_of_its_document():
    from pipelines.chunking import chunk_document
    from pipelines.sources import SourceFile, parse_document, read_bytes

    sections: dict[str, list[str]] = {}
    missing = []
    for item in load_qa_dataset():
        for gold in item.gold:
            if gold.doc_id not in sections:
                relative = gold.doc_id.split(":", 1)[1]
                stat = (PYTHON_DOCS / relative).stat()
                file = SourceFile("python-docs", relative, PYTHON_DOCS / relative, stat.st_size, stat.st_mtime_ns)
                document = parse_document(file, read_bytes(file, 8_000_000), "-")
                sections[gold.doc_id] = [c.section for c in chunk_document(document, ChunkerSettings())]
            if not any(gold.section in s for s in sections[gold.doc_id]):
                missing.append(f"{item.id}: no chunk of {gold.doc_id} has a section containing {gold.section!r}")
    assert not missing, "\n".join(missing)

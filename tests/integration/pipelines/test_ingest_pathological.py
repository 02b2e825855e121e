"""Pathological documents, through real Dagster materializations into a real milvus-lite: each is
indexed or skipped with a reason, the rest of the corpus is indexed, and the asset checks pass."""

import uuid

from pipelines.automation import pending_changes
from pipelines.ledger import Ledger
from pipelines.materialize import asset_metadata, check_outcomes
from pipelines.sources import scan_sources
from pipelines.text import MAX_HEADING_CHARS
from ragyard import collection as col
from tests.support.corpus import write_corpus
from tests.support.ingest import (
    ALL_CHECKS,
    document_rows,
    index_metadata,
    run_ingest,
    skipped_reasons,
)

HEADING_5K = " ".join(f"entry{n:04d}" for n in range(555))[:5000]
HEADING_60K = " ".join(f"index-term-{n:05d}" for n in range(3530))[:60000]
# Five folders of 200 characters and a 240-byte file name: the document id would be ~1,250 bytes.
LONG_FOLDERS = [f"{n}-" + "folder" * 33 for n in range(5)]
LONG_NAME = "é" * 117 + "-notes.md"


def _html(body: str, title: str = "") -> bytes:
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>".encode()


def _write_pathological(corpus) -> dict[str, str]:
    """Writes the files; {path: a phrase its indexed text must contain}."""
    (corpus / "heading-5k.html").write_bytes(_html(f"<h1>{HEADING_5K}</h1><p>Body under a huge heading.</p>"))
    (corpus / "heading-60k.html").write_bytes(
        _html(f"<h1>Index</h1><h2>{HEADING_60K}</h2><p>Body under a giant heading.</p>", title="x" * 3000)
    )
    rows = "".join(f"<tr><td>package{n}</td><td>version {n}.0</td><td>section admin</td></tr>" for n in range(400))
    (corpus / "one-table.html").write_bytes(_html(f"<table>{rows}</table>"))
    depth = 5000  # far deeper than Python's recursion limit
    (corpus / "deep.html").write_bytes(
        _html("<div>" * depth + "text at the bottom of five thousand levels" + "</div>" * depth)
    )
    (corpus / "one.txt").write_text("x")
    (corpus / "mixed.md").write_bytes(
        "# Mixed encodings\n\nUTF-8 first: naïve café.\n\n".encode() + b"Then a Latin-1 byte: r\xe9sum\xe9 here.\n"
    )
    (corpus / "utf16.md").write_bytes(
        "# UTF-16 page\n\nWritten in UTF-16 with a byte order mark: naïve.".encode("utf-16")
    )
    folder = corpus.joinpath(*LONG_FOLDERS)
    folder.mkdir(parents=True)
    (folder / LONG_NAME).write_text("# Deep notes\n\nA file at the end of a very long path.\n")
    long_path = "/".join([*LONG_FOLDERS, LONG_NAME])
    return {
        "heading-5k.html": "entry0100",
        "heading-60k.html": "index-term-03000",
        "one-table.html": "package399 | version 399.0 | section admin",
        "deep.html": "text at the bottom of five thousand levels",
        "one.txt": "x",
        "mixed.md": "résumé",
        "utf16.md": "byte order mark: naïve",
        long_path: "end of a very long path",
    }


def _doc_id(ledger: Ledger, path: str) -> str:
    [doc_id] = [d for d, e in ledger.entries().items() if e.path == path]
    return doc_id


def test_pathological_documents_are_indexed_or_skipped_with_a_reason(settings, corpus):
    write_corpus(corpus, count=2)
    expected = _write_pathological(corpus)
    (corpus / "garbage.html").write_bytes(b"\x00\x01\x02" * 100)
    result = run_ingest(settings)
    ledger = Ledger(settings.ledger_path)
    documents = asset_metadata(result, "documents")
    # Nothing is lost: every file seen is indexed or skipped with its reason.
    assert skipped_reasons(result) == {"garbage.html": "binary content (NUL bytes) in a text file"}
    assert len(ledger.entries()) + documents["skipped_files"] == documents["files_seen"] == 12
    assert check_outcomes(result) == ALL_CHECKS
    for path, phrase in expected.items():
        rows = document_rows(settings, _doc_id(ledger, path))
        assert any(phrase in r[col.TEXT] for r in rows), path
        for row in rows:  # every field within its limit
            for field in (col.CHUNK_ID, col.TEXT, col.TITLE, col.PATH):
                assert len(row[field].encode()) <= col.VARCHAR_MAX_BYTES[field], (path, field)

    # A heading thousands of characters long is content: its words are indexed, a short form titles it.
    [huge] = document_rows(settings, "docs:heading-5k.html")[:1]
    assert len(huge[col.TITLE]) <= MAX_HEADING_CHARS and huge[col.TITLE].startswith("entry0000 entry0001")
    # A path too long for the id field gets a stable hashed id; chunk ids are still built from it.
    long_path = next(p for p in expected if p.startswith(LONG_FOLDERS[0]))
    doc_id = _doc_id(ledger, long_path)
    assert len(doc_id.encode()) <= col.DOC_ID_MAX_BYTES and doc_id.startswith("docs:0-folder")
    [row] = document_rows(settings, doc_id)
    assert row[col.CHUNK_ID] == f"{doc_id}#00000" and row[col.PATH].endswith("…")

    # Stable ids: nothing changed, nothing embedded; then the long path leaves the index when deleted.
    again = run_ingest(settings)
    assert index_metadata(again)["embedded_chunks"] == 0 and check_outcomes(again) == ALL_CHECKS
    corpus.joinpath(*LONG_FOLDERS, LONG_NAME).unlink()
    deleted = run_ingest(settings)
    assert index_metadata(deleted)["deleted_documents"] == 1 and document_rows(settings, doc_id) == []
    assert check_outcomes(deleted) == ALL_CHECKS


def _narrow_title_collection(settings, max_title: int) -> None:
    """The collection as an older schema made it: titles limited to `max_title` characters."""
    client = col.connect(settings.milvus.uri)
    schema = col.build_schema(settings.embedder.dim)
    next(f for f in schema.fields if f.name == col.TITLE).params["max_length"] = max_title
    index_params = client.prepare_index_params()
    index_params.add_index(col.DENSE, **col.dense_index())
    index_params.add_index(col.SPARSE, **col.SPARSE_INDEX)
    client.create_collection(settings.milvus.collection, schema=schema, index_params=index_params)


def test_a_document_milvus_refuses_is_skipped_recorded_and_retried_only_when_it_changes(settings, corpus):
    settings.ingest.write_batch_rows = 10_000  # one batch: Milvus refuses it whole, then each document alone
    _narrow_title_collection(settings, max_title=64)
    write_corpus(corpus, count=3)
    refused = corpus / "long-title.md"
    refused.write_text("# " + "A title Milvus finds too long " * 5 + "\n\nSome text.\n")

    first = run_ingest(settings)
    reason = skipped_reasons(first)["long-title.md"]
    assert reason.startswith("Milvus refused the document:") and "'title'" in reason
    meta = index_metadata(first)
    assert meta["failed_documents"] == 1 and meta["indexed_documents"] == 4
    assert "docs:long-title.md" not in Ledger(settings.ledger_path).entries()
    assert check_outcomes(first) == ALL_CHECKS

    # Not retried at full cost: skipped before parsing, with its reason; the sensor sees nothing to do.
    second = run_ingest(settings)
    assert skipped_reasons(second, "documents") == {"long-title.md": reason}
    assert asset_metadata(second, "embeddings")["encoded_texts"] == 0
    assert not any(pending_changes(settings, scan_sources(settings.ingest.sources)).values())

    refused.write_text("# Another title Milvus finds too long, and longer than sixty-four characters\n\nText.\n")
    third = run_ingest(settings)  # the file changed: tried again, refused again
    assert skipped_reasons(third)["long-title.md"] != reason and check_outcomes(third) == ALL_CHECKS

    col.connect(settings.milvus.uri).drop_collection(settings.milvus.collection)
    rebuilt = run_ingest(settings)  # a new collection, with the full schema: every refusal is void
    assert skipped_reasons(rebuilt) == {} and "docs:long-title.md" in Ledger(settings.ledger_path).entries()
    assert Ledger(settings.ledger_path).failures() == {}
    assert check_outcomes(rebuilt) == ALL_CHECKS


def test_a_parser_crash_skips_only_that_file(settings, corpus, monkeypatch):
    """A parser bug on one file is that file's skip reason, not the run's failure. The parser is
    replaced: no real file crashes ours (pypdf turns the malformed PDFs tried into errors it names)."""
    from pipelines import parsing

    def crashing_pdf(data: bytes):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setitem(parsing.PARSERS, ".pdf", crashing_pdf)
    write_corpus(corpus, count=1)
    (corpus / f"{uuid.uuid4().hex}.pdf").write_bytes(b"%PDF-1.4 a file the parser chokes on")
    result = run_ingest(settings)
    [reason] = skipped_reasons(result).values()
    assert reason == "parser failed: RecursionError: maximum recursion depth exceeded"
    assert check_outcomes(result) == ALL_CHECKS

"""The ingestion pipeline end to end: real Dagster materializations, real milvus-lite, the real model."""

import os
import threading

import dagster as dg
import pytest

from bentos.retriever.search import Searcher
from pipelines.automation import make_nightly_schedule
from pipelines.ledger import Ledger
from pipelines.materialize import check_outcomes
from ragyard import collection as col
from ragyard.embedding import EmbeddingModel
from router.index_version import version_of
from tests.support.corpus import rst_document, write_corpus
from tests.support.ingest import (
    ALL_CHECKS,
    document_rows,
    index_metadata,
    run_ingest,
    skipped_reasons,
)


def _client(settings):
    return col.connect(settings.milvus.uri)


def test_first_build_indexes_every_document(settings, corpus):
    write_corpus(corpus)
    result = run_ingest(settings)
    meta = index_metadata(result)
    ledger = Ledger(settings.ledger_path)
    assert len(ledger.entries()) == 7
    assert meta["embedded_chunks"] == meta["total_chunks"] == ledger.chunk_total() > 14
    assert col.row_count(_client(settings), settings.milvus.collection) == meta["total_chunks"]
    assert check_outcomes(result) == ALL_CHECKS
    # Stable, readable ids: document id from source and path, chunk id from position.
    rows = document_rows(settings, "docs:guide/dictionaries.rst")
    assert [r[col.CHUNK_ID] for r in rows][:2] == [
        "docs:guide/dictionaries.rst#00000",
        "docs:guide/dictionaries.rst#00001",
    ]
    assert "Dictionaries > Using dictionaries part 1" in rows[1][col.TEXT]
    assert ":func:" not in " ".join(r[col.TEXT] for r in rows)  # reST roles are unwrapped


@pytest.mark.parametrize(
    "index_type, build, search",
    [
        ("HNSW", {}, {}),
        ("IVF_SQ8", {"nlist": 8}, {"nprobe": 8}),  # tiny nlist: the corpus has a few dozen chunks
    ],
)
def test_every_search_mode_finds_the_right_document_on_the_configured_index(
    settings, corpus, index_type, build, search
):
    settings.milvus.dense_index, settings.milvus.dense_index_params = index_type, build
    settings.milvus.dense_search_params = search
    write_corpus(corpus)
    run_ingest(settings)
    index = _client(settings).describe_index(settings.milvus.collection, col.DENSE)
    assert index["index_type"] == index_type  # (milvus-lite does not report the build parameters)
    searcher = Searcher.from_settings(settings)
    query = "how do decorators work in python"
    vector = EmbeddingModel.from_settings(settings).encode([query])[0].tolist()  # the ingestion's backend
    for mode in ("hybrid", "dense"):  # hybrid first: its dense half must already use the collection's index
        assert searcher.search(mode, query, vector, 3, "")[0][col.DOC_ID] == "docs:guide/decorators.rst"
    assert searcher.bm25("generators revision", 3, "")[0][col.DOC_ID] == "docs:reference/generators.rst"
    # Searches use the collection's own index, whatever the settings say now.
    assert searcher.index_type == index_type
    assert searcher.dense_params(100)["params"] == ({"ef": 100} if index_type == "HNSW" else {"nprobe": 8})


def test_rerun_with_nothing_changed_embeds_nothing(settings, corpus):
    write_corpus(corpus)
    first = index_metadata(run_ingest(settings))
    second = run_ingest(settings)
    meta = index_metadata(second)
    assert meta["embedded_chunks"] == 0
    assert meta["total_chunks"] == first["total_chunks"]
    assert check_outcomes(second) == ALL_CHECKS


def test_touched_but_unchanged_file_is_not_reembedded(settings, corpus):
    paths = write_corpus(corpus)
    run_ingest(settings)
    os.utime(paths[0], ns=(1, 1))
    assert index_metadata(run_ingest(settings))["embedded_chunks"] == 0
    entry = Ledger(settings.ledger_path).entries()["docs:reference/lists.rst"]
    assert entry.mtime_ns == 1  # the new stat is recorded, so the next scan skips reading it


def test_nightly_rehash_catches_an_edit_that_kept_size_and_mtime(settings, corpus):
    write_corpus(corpus, count=2)
    run_ingest(settings)
    path = corpus / "reference" / "lists.rst"
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace("revision 1", "revision 7"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert index_metadata(run_ingest(settings))["embedded_chunks"] == 0  # the stat scan cannot see it
    index = Searcher.from_settings(settings)  # what the retriever answers the router (GET /index)
    before, rows = version_of(index.index_info()), col.row_count(_client(settings), settings.milvus.collection)
    nightly = make_nightly_schedule(settings)
    result = run_ingest(
        settings, run_config=nightly.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config
    )
    entry = Ledger(settings.ledger_path).entries()["docs:reference/lists.rst"]
    assert index_metadata(result)["embedded_chunks"] == entry.chunk_count > 0
    assert "revision 7" in document_rows(settings, "docs:reference/lists.rst")[0][col.TEXT]
    # Same chunk count, new content: the version the router's cache keys on changes with it.
    assert col.row_count(_client(settings), settings.milvus.collection) == rows
    after = version_of(index.index_info())
    assert after != before and after.endswith(Ledger(settings.ledger_path).content_version())


def test_one_file_edit_embeds_only_its_chunks(settings, corpus):
    write_corpus(corpus)
    run_ingest(settings)
    before = Ledger(settings.ledger_path).entries()
    (corpus / "reference" / "generators.rst").write_text(rst_document("generators", sections=4, version=2))
    result = run_ingest(settings)
    meta = index_metadata(result)
    after = Ledger(settings.ledger_path).entries()
    changed = after["docs:reference/generators.rst"]
    assert changed.content_hash != before["docs:reference/generators.rst"].content_hash
    assert changed.chunk_count > before["docs:reference/generators.rst"].chunk_count
    assert meta["embedded_chunks"] == changed.chunk_count
    assert {d: e.content_hash for d, e in after.items() if d != changed.doc_id} == {
        d: e.content_hash for d, e in before.items() if d != changed.doc_id
    }
    rows = document_rows(settings, changed.doc_id)
    assert [r[col.POSITION] for r in rows] == list(range(changed.chunk_count))
    assert {r[col.CONTENT_HASH] for r in rows} == {changed.content_hash}
    assert "revision 2" in rows[0][col.TEXT]
    assert check_outcomes(result) == ALL_CHECKS


def test_shrunk_document_loses_its_surplus_chunks(settings, corpus):
    write_corpus(corpus)
    run_ingest(settings)
    old_count = Ledger(settings.ledger_path).entries()["docs:reference/generators.rst"].chunk_count
    (corpus / "reference" / "generators.rst").write_text(rst_document("generators", sections=1, version=3))
    result = run_ingest(settings)
    new_count = Ledger(settings.ledger_path).entries()["docs:reference/generators.rst"].chunk_count
    assert new_count < old_count
    assert index_metadata(result)["removed_stale_chunks"] == old_count - new_count
    assert len(document_rows(settings, "docs:reference/generators.rst")) == new_count
    assert check_outcomes(result) == ALL_CHECKS


def test_deleted_file_leaves_the_index(settings, corpus):
    write_corpus(corpus)
    run_ingest(settings)
    count = Ledger(settings.ledger_path).entries()["docs:reference/lists.rst"].chunk_count
    (corpus / "reference" / "lists.rst").unlink()
    result = run_ingest(settings)
    meta = index_metadata(result)
    assert meta["deleted_documents"] == 1 and meta["deleted_chunks"] == count
    assert document_rows(settings, "docs:reference/lists.rst") == []
    assert "docs:reference/lists.rst" not in Ledger(settings.ledger_path).entries()
    assert check_outcomes(result) == ALL_CHECKS


def test_bad_files_are_skipped_with_reasons_and_the_run_goes_on(settings, corpus):
    write_corpus(corpus, count=2)
    (corpus / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    (corpus / "empty.md").write_text("  \n\n")
    (corpus / "latin1.rst").write_bytes("Caf\xe9\n====\n\nna\xefve text".encode("latin-1"))  # read as Windows-1252
    (corpus / "koi8.md").write_bytes("# Привет\n\nтекст в другой кодировке".encode("koi8-r"))
    (corpus / "huge.txt").write_text("word " * 400_000)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "dangling.md").symlink_to(corpus / "nowhere.md")
    settings.ingest.max_file_bytes = 1_000_000
    result = run_ingest(settings)
    reasons = skipped_reasons(result, "documents")
    assert set(reasons) == {"binary.txt", "empty.md", "koi8.md", "huge.txt", "broken.pdf", "dangling.md"}
    assert "binary" in reasons["binary.txt"]
    assert reasons["empty.md"] == "empty file"
    assert reasons["koi8.md"].startswith("not valid UTF-8: byte 0xf0 at offset 2")
    assert "above the limit of 1000000" in reasons["huge.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert reasons["dangling.md"].startswith("unreadable")
    assert set(Ledger(settings.ledger_path).entries()) == {
        "docs:reference/lists.rst",
        "docs:guide/dictionaries.rst",
        "docs:notes.md",
        "docs:latin1.rst",
    }
    assert "Café" in document_rows(settings, "docs:latin1.rst")[0][col.TEXT]
    assert check_outcomes(result) == ALL_CHECKS


def test_a_file_gone_bad_keeps_its_indexed_version(settings, corpus):
    write_corpus(corpus, count=2)
    run_ingest(settings)
    before = document_rows(settings, "docs:guide/dictionaries.rst")
    (corpus / "guide" / "dictionaries.rst").write_bytes(b"\x00\x01\x02 corrupted")
    result = run_ingest(settings)
    assert document_rows(settings, "docs:guide/dictionaries.rst") == before
    assert check_outcomes(result) == ALL_CHECKS


def test_chunker_change_reindexes_every_document(settings, corpus):
    write_corpus(corpus, count=3)
    first = index_metadata(run_ingest(settings))
    settings.chunker.max_chars = 400
    meta = index_metadata(run_ingest(settings))
    assert meta["embedded_chunks"] == meta["total_chunks"] > first["total_chunks"]


def test_dropped_collection_is_rebuilt_from_scratch(settings, corpus):
    write_corpus(corpus, count=3)
    first = index_metadata(run_ingest(settings))
    _client(settings).drop_collection(settings.milvus.collection)
    result = run_ingest(settings)
    assert index_metadata(result)["embedded_chunks"] == first["total_chunks"]
    assert check_outcomes(result) == ALL_CHECKS


def test_search_keeps_answering_while_a_write_runs(settings, corpus):
    write_corpus(corpus)
    run_ingest(settings)
    for path in corpus.rglob("*.rst"):
        path.write_text(rst_document(path.stem.replace("_", " "), sections=5, version=9))
    client = _client(settings)
    errors, empty, searches = [], 0, 0
    stop = threading.Event()

    def search_loop():
        nonlocal empty, searches
        while not stop.is_set():
            try:
                hits = client.search(
                    settings.milvus.collection,
                    data=["dictionaries"],
                    anns_field=col.SPARSE,
                    limit=3,
                    output_fields=[col.DOC_ID],
                )
                searches += 1
                empty += not hits[0]
            except Exception as e:  # noqa: BLE001 - any failure is what the test is looking for
                errors.append(e)

    thread = threading.Thread(target=search_loop)
    thread.start()
    try:
        result = run_ingest(settings)
    finally:
        stop.set()
        thread.join()
    assert errors == [] and empty == 0 and searches > 0
    assert check_outcomes(result) == ALL_CHECKS

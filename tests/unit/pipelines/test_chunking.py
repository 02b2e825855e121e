"""Chunks are bounded, overlap within a section, carry their heading path, and have stable ids."""

from itertools import pairwise

from pipelines.chunking import chunk_document, split_text
from pipelines.documents import Document, Section
from ragyard import collection as col
from ragyard.settings import ChunkerSettings

SETTINGS = ChunkerSettings(max_chars=300, overlap_chars=60, min_chars=100)


def _document(*sections: Section) -> Document:
    return Document("src:a.rst", "src", "a.rst", "A", "hash", tuple(sections))


def _paragraphs(n: int, words: int = 12) -> str:
    return "\n\n".join(" ".join(f"p{i}w{j}" for j in range(words)) + "." for i in range(n))


def test_every_chunk_fits_and_every_word_is_kept():
    text = _paragraphs(20)
    chunks = chunk_document(_document(Section(("A", "Long"), text)), SETTINGS)
    assert len(chunks) > 3
    assert all(len(c.text) <= SETTINGS.max_chars + len("A > Long\n\n") for c in chunks)
    kept = " ".join(c.text for c in chunks).split()
    assert all(word in kept for word in text.split())


def test_consecutive_pieces_of_a_section_overlap():
    chunks = chunk_document(_document(Section(("A",), _paragraphs(12))), SETTINGS)
    for first, second in pairwise(chunks):
        body_first, body_second = first.text.split("\n\n", 1)[1], second.text.split("\n\n", 1)[1]
        assert body_second.split()[0] in body_first.split()[-12:]


def test_small_sections_are_packed_but_not_across_top_level_parts():
    document = _document(
        Section(("A", "x"), "tiny one."),
        Section(("A", "y"), "tiny two."),
        Section(("B", "z"), "tiny three."),
    )
    chunks = chunk_document(document, SETTINGS)
    assert [c.text.split("\n\n", 1)[1] for c in chunks] == ["tiny one.\n\ntiny two.", "tiny three."]
    assert [c.section for c in chunks] == ["A > x", "B > z"]


def test_ids_are_stable_and_positional():
    document = _document(Section(("A",), _paragraphs(8)))
    first = chunk_document(document, SETTINGS)
    again = chunk_document(document, SETTINGS)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert [c.chunk_id for c in first] == [f"src:a.rst#{i:05d}" for i in range(len(first))]
    assert {c.content_hash for c in first} == {"hash"}


def test_split_text_falls_back_to_sentences_then_characters():
    sentences = "One sentence here. " * 30
    assert all(len(p) <= 100 for p in split_text(sentences, 100))
    assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]


def test_chunks_of_multibyte_characters_fit_the_text_field_in_bytes():
    settings = ChunkerSettings(max_chars=8000, overlap_chars=0, min_chars=100)
    text = " ".join("😀" * 9 for _ in range(3000))  # 4 bytes a character: 8,000 characters are 32 kB
    chunks = chunk_document(_document(Section(("Emoji " * 40,), text)), settings)
    assert len(chunks) > 2 and all(len(c.text.encode()) <= col.TEXT_MAX_BYTES for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert sum(c.text.count("😀") for c in chunks) == text.count("😀")

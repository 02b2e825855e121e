"""Structure-aware chunking: sections are packed or split into chunks of bounded size.

A chunk never spans two top-level parts of a document; small neighbouring sections are packed
together; a long section is split at paragraph, then line, then sentence, then character
boundaries, and consecutive pieces of one section overlap by up to `overlap_chars`.
"""

from __future__ import annotations

import re
from itertools import pairwise

from pipelines.documents import Chunk, Document, Section, chunk_id
from ragyard import collection as col
from ragyard.settings import ChunkerSettings

BREADCRUMB_SEPARATOR = " > "
_BREADCRUMB_MAX_CHARS = 300
_SPLITTERS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))


def breadcrumb(headings: tuple[str, ...]) -> str:
    text = BREADCRUMB_SEPARATOR.join(headings)
    return text if len(text) <= _BREADCRUMB_MAX_CHARS else "…" + text[-(_BREADCRUMB_MAX_CHARS - 1) :]


def split_text(text: str, max_chars: int, level: int = 0) -> list[str]:
    """Split `text` into pieces of at most `max_chars`, preferring the coarsest boundary."""
    if len(text) <= max_chars:
        return [text]
    if level == len(_SPLITTERS):
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    separator = "\n\n" if level == 0 else ("\n" if level == 1 else " ")
    pieces: list[str] = []
    current = ""
    for part in _SPLITTERS[level].split(text):
        part = part.strip("\n")
        if not part:
            continue
        if len(part) > max_chars:
            if current:
                pieces.append(current)
                current = ""
            pieces.extend(split_text(part, max_chars, level + 1))
        elif not current:
            current = part
        elif len(current) + len(separator) + len(part) <= max_chars:
            current += separator + part
        else:
            pieces.append(current)
            current = part
    if current:
        pieces.append(current)
    return pieces


def _overlap_tail(text: str, overlap_chars: int) -> str:
    """The end of `text`, at most `overlap_chars` long, starting at a word boundary."""
    if overlap_chars == 0 or len(text) <= overlap_chars:
        return "" if overlap_chars == 0 else text
    tail = text[-overlap_chars:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail


def _section_pieces(section: Section, settings: ChunkerSettings) -> list[str]:
    body_max = settings.max_chars - settings.overlap_chars
    pieces = split_text(section.text, body_max)
    with_overlap = [pieces[0]]
    for previous, piece in pairwise(pieces):
        tail = _overlap_tail(previous, settings.overlap_chars)
        with_overlap.append(f"{tail} {piece}" if tail else piece)
    return with_overlap


def _packed_sections(sections: tuple[Section, ...], settings: ChunkerSettings) -> list[tuple[str, str]]:
    """(breadcrumb, body) pairs: small sections under the same top heading are packed together."""
    packed: list[tuple[str, str]] = []
    pending_crumb, pending, pending_top = "", "", None
    for section in sections:
        crumb = breadcrumb(section.headings)
        top = section.headings[:1]
        small = len(section.text) < settings.min_chars
        fits = pending and top == pending_top and len(pending) + len(section.text) + 2 <= settings.max_chars
        if fits and (small or len(pending) < settings.min_chars):
            pending += "\n\n" + section.text
            continue
        if pending:
            packed.append((pending_crumb, pending))
        if small:
            pending_crumb, pending, pending_top = crumb, section.text, top
        else:
            packed.extend((crumb, piece) for piece in _section_pieces(section, settings))
            pending_crumb, pending, pending_top = "", "", None
    if pending:
        packed.append((pending_crumb, pending))
    return packed


def _chunk_text(crumb: str, body: str) -> str:
    # The heading path is part of the indexed text: it carries the words a user asks with.
    return f"{crumb}\n\n{body}" if crumb else body


def _within_text_field(crumb: str, body: str) -> list[str]:
    """`body`, split further if its chunk text is above the collection's text field limit: the
    limit is in bytes, max_chars in characters, and a character takes up to 4 bytes."""
    pieces, max_chars = [body], len(body)
    while any(len(_chunk_text(crumb, p).encode()) > col.TEXT_MAX_BYTES for p in pieces):
        max_chars //= 2
        pieces = split_text(body, max_chars)
    return pieces


def chunk_document(document: Document, settings: ChunkerSettings) -> list[Chunk]:
    chunks = []
    bodies = [
        (crumb, piece)
        for crumb, body in _packed_sections(document.sections, settings)
        for piece in _within_text_field(crumb, body)
    ]
    for position, (crumb, body) in enumerate(bodies):
        text = _chunk_text(crumb, body)
        chunks.append(
            Chunk(
                chunk_id=chunk_id(document.doc_id, position),
                doc_id=document.doc_id,
                source=document.source,
                path=document.path,
                title=document.title,
                section=crumb,
                position=position,
                text=text,
                content_hash=document.content_hash,
            )
        )
    return chunks

"""HTML to titled sections, in one pass that survives real pages: headings thousands of characters
long, tables of thousands of rows, markup nested thousands of levels deep, text outside any block."""

from __future__ import annotations

from collections.abc import Iterator

from bs4 import BeautifulSoup, CData, NavigableString, Tag

from pipelines.documents import Section
from pipelines.text import (
    UnparsableFile,
    decode_text,
    is_overlong_heading,
    short_heading,
)

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Blocks read as one paragraph each, with whatever they contain; a table row is one line of cells.
_BLOCKS = {"p", "pre", "li", "dt", "dd", "td", "th", "blockquote", "caption", "tr"}
_DROPPED_TAGS = ["script", "style", "nav", "header", "footer", "noscript", "form"]
_DROPPED_SELECTORS = '[role="navigation"], .sphinxsidebar, .related, .headerlink'
_CELLS = ("td", "th")


def _markup(data: bytes) -> str | bytes:
    try:
        return decode_text(data)
    except UnparsableFile:
        return data  # mostly in another encoding: BeautifulSoup reads <meta charset> or guesses


def _block_text(tag: Tag) -> str:
    if tag.name == "pre":
        return tag.get_text("")
    if tag.name == "tr":
        cells = tag.find_all(_CELLS, recursive=False)
        if cells:
            return " | ".join(cell.get_text(" ", strip=True) for cell in cells)
    return tag.get_text(" ", strip=True)


def _walk(root: Tag) -> Iterator[tuple[str, str]]:
    """("heading<level>" | "text", text) in document order. Iterative, with an explicit stack:
    a recursive walk fails on pages nested deeper than Python's recursion limit."""
    stack = [iter(root.children)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
        elif isinstance(node, Tag):
            if node.name in _HEADINGS:
                yield node.name, node.get_text(" ", strip=True)
            elif node.name in _BLOCKS:
                yield "text", _block_text(node)
            else:
                stack.append(iter(node.children))
        elif type(node) in (NavigableString, CData):  # not comments, doctypes, scripts' text
            yield "loose", str(node).strip()


def parse_html(data: bytes) -> tuple[str, list[Section]]:
    soup = BeautifulSoup(_markup(data), "html.parser")
    for tag in soup(_DROPPED_TAGS):
        tag.decompose()
    for tag in soup.select(_DROPPED_SELECTORS):
        tag.decompose()
    page_title = short_heading(soup.title.get_text(" ", strip=True)) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    path: list[str] = []
    sections: list[Section] = []
    body: list[str] = []
    loose: list[str] = []  # text between blocks, joined into one paragraph

    def end_paragraph() -> None:
        if loose:
            body.append(" ".join(loose))
            loose.clear()

    def flush() -> None:
        end_paragraph()
        content = "\n\n".join(p for p in body if p.strip()).strip()
        if content:
            sections.append(Section(tuple(h for h in path if h), content))
        body.clear()

    for kind, text in _walk(soup.body or soup):
        if not text.strip():
            continue
        if kind == "loose":
            loose.append(text)
        elif kind == "text":
            end_paragraph()
            body.append(text)
        else:
            flush()
            level = int(kind[1]) - 1
            del path[level:]
            path.extend([""] * (level - len(path)))
            path.append(short_heading(text))
            if is_overlong_heading(text):
                body.append(text)
    flush()
    title = next((s.headings[0] for s in sections if s.headings), "") or page_title
    return title, sections

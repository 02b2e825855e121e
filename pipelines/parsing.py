"""Turn a file's bytes into titled sections, by format (reST, Markdown, HTML, PDF, plain text)."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Callable

from pipelines.documents import Section
from pipelines.html_parsing import parse_html
from pipelines.text import (
    UnparsableFile,
    collapse_blank_lines,
    decode_text,
    is_overlong_heading,
    short_heading,
)

__all__ = ["PARSERS", "UnparsableFile", "parser_for"]


# ---- reStructuredText (Sphinx flavoured) ----------------------------------------------------

_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`__?")
_REF_TARGET_TEXT = re.compile(r"^(.*?)\s*<[^>]+>$")
_INLINE = re.compile(r"``([^`]+)``|\*\*([^*]+)\*\*|`([^`]+)`_{0,2}")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_COMMENT_OR_TARGET = re.compile(r"^(\s*)\.\.(\s|$)")
_DIRECTIVE_OPTION = re.compile(r"^\s+:[\w-]+:")
# Directives whose body carries no prose for a reader.
_DROPPED_DIRECTIVES = {
    "index",
    "toctree",
    "highlight",
    "sectionauthor",
    "moduleauthor",
    "raw",
    "only",
    "testsetup",
    "testcleanup",
    "include",
    "literalinclude",
    "image",
    "figure",
    "productionlist",
    "currentmodule",
    "tabularcolumns",
    "opcode",
    "availability",
    "audit-event",
    "audit-event-table",
    "impl-detail",
    "cmdoption",
}
# Object descriptions (".. function:: open(file)") become sub-sections named by their signature.
_OBJECT_DIRECTIVES = {
    "function",
    "method",
    "class",
    "attribute",
    "data",
    "exception",
    "decorator",
    "classmethod",
    "staticmethod",
    "module",
    "envvar",
    "option",
    "describe",
    "c:function",
    "c:type",
    "c:macro",
    "c:member",
    "c:var",
    "opcode",
    "pdbcommand",
}
_ADMONITIONS = {
    "note",
    "warning",
    "seealso",
    "tip",
    "important",
    "caution",
    "hint",
    "attention",
    "danger",
    "error",
    "versionadded",
    "versionchanged",
    "deprecated",
    "deprecated-removed",
}


def _clean_role(match: re.Match) -> str:
    text = match.group(1)
    target = _REF_TARGET_TEXT.match(text)
    if target:
        text = target.group(1)
    return text.lstrip("~!")


def clean_rst_inline(line: str) -> str:
    line = _ROLE.sub(_clean_role, line)
    line = _LINK.sub(r"\1", line)
    return _INLINE.sub(lambda m: next(g for g in m.groups() if g is not None), line)


def _rst_lines_without_markup(lines: list[str]) -> list[str]:
    """Drop comments, targets, directive options and dropped directives (with their bodies)."""
    out: list[str] = []
    skip_indent: int | None = None
    after_directive = False
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if stripped == "" or indent > skip_indent:
                continue
            skip_indent = None
        if after_directive and _DIRECTIVE_OPTION.match(line):
            continue  # ":noindex:", ":synopsis: ..." and the like
        after_directive = False
        directive = _DIRECTIVE.match(line)
        if directive:
            name = directive.group(2).split(":")[-1]
            argument = directive.group(3).strip()
            after_directive = True
            if name in _DROPPED_DIRECTIVES:
                skip_indent = indent
            elif name in _ADMONITIONS:
                out.append(f"{directive.group(1)}{name.capitalize()}: {argument}".rstrip())
            elif argument:
                out.append(directive.group(1) + argument)  # ".. function:: open(file)" -> signature
            continue
        if _COMMENT_OR_TARGET.match(line):
            skip_indent = indent
            continue
        out.append(line)
    return out


def parse_rst(text: str) -> tuple[str, list[Section]]:
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # heading styles in order of first use = levels
    path: list[str] = []
    sections: list[Section] = []
    body: list[str] = []
    title = ""
    heading_depth = 0  # len(path) without the object description at its end, if any

    def flush() -> None:
        kept = "\n".join(clean_rst_inline(line) for line in _rst_lines_without_markup(body))
        content = textwrap.dedent(kept).strip()
        if content:
            sections.append(Section(tuple(path), collapse_blank_lines(content)))
        body.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        heading = None
        # overline + title + underline
        if (
            _ADORNMENT.match(line)
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and _ADORNMENT.match(lines[i + 2])
            and lines[i + 2].strip()[0] == line.strip()[0]
        ):
            heading, style, consumed = lines[i + 1].strip(), (line.strip()[0], True), 3
        # title + underline at least as long as the title
        elif (
            line.strip()
            and not line.startswith((" ", "\t"))
            and i + 1 < len(lines)
            and _ADORNMENT.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
            and not _ADORNMENT.match(line)
        ):
            heading, style, consumed = line.strip(), (lines[i + 1].strip()[0], False), 2
        if heading is None:
            directive = _DIRECTIVE.match(line)
            if directive and not directive.group(1) and directive.group(2) in _OBJECT_DIRECTIVES:
                flush()
                del path[heading_depth:]
                path.append(clean_rst_inline(directive.group(3).strip()) or directive.group(2))
            body.append(line)
            i += 1
            continue
        flush()
        if style not in styles:
            styles.append(style)
        level = styles.index(style)
        heading = clean_rst_inline(heading)
        del path[level:]
        path.append(short_heading(heading))
        heading_depth = len(path)
        title = title or path[-1]
        if is_overlong_heading(heading):
            body.append(heading)
        i += consumed
    flush()
    return title, sections


# ---- Markdown --------------------------------------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_markdown(text: str) -> tuple[str, list[Section]]:
    path: list[str] = []
    sections: list[Section] = []
    body: list[str] = []
    title = ""
    in_fence = False

    def flush() -> None:
        content = collapse_blank_lines("\n".join(body).strip())
        if content:
            sections.append(Section(tuple(path), content))
        body.clear()

    for line in text.splitlines():
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _MD_HEADING.match(line)
        if heading is None:
            body.append(line)
            continue
        flush()
        level, text = len(heading.group(1)) - 1, heading.group(2)
        del path[level:]
        path.extend([""] * (level - len(path)))
        path.append(short_heading(text))
        title = title or path[-1]
        if is_overlong_heading(text):
            body.append(text)
    flush()
    return title, [Section(tuple(h for h in s.headings if h), s.text) for s in sections]


# ---- PDF and plain text ----------------------------------------------------------------------


def parse_pdf(data: bytes) -> tuple[str, list[Section]]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        title = (reader.metadata.title if reader.metadata else None) or ""
        sections = [
            Section((f"Page {n}",), collapse_blank_lines(page.extract_text() or "").strip())
            for n, page in enumerate(reader.pages, start=1)
        ]
    except (PdfReadError, ValueError, KeyError) as e:
        raise UnparsableFile(f"unreadable PDF: {e}") from e
    return title, [s for s in sections if s.text]


def parse_plain(text: str) -> tuple[str, list[Section]]:
    content = collapse_blank_lines(text.strip())
    first_line = short_heading(content.split("\n", 1)[0].strip())
    return first_line, ([Section((), content)] if content else [])


def _text_parser(parse: Callable[[str], tuple[str, list[Section]]]):
    return lambda data: parse(decode_text(data))


# File name endings in the order they are tried; ".rst.txt" is how Sphinx ships reST sources.
PARSERS: dict[str, Callable[[bytes], tuple[str, list[Section]]]] = {
    ".rst.txt": _text_parser(parse_rst),
    ".rst": _text_parser(parse_rst),
    ".md": _text_parser(parse_markdown),
    ".markdown": _text_parser(parse_markdown),
    ".html": parse_html,
    ".htm": parse_html,
    ".pdf": parse_pdf,
    ".txt": _text_parser(parse_plain),
}


def parser_for(filename: str):
    lower = filename.lower()
    for ending, parse in PARSERS.items():
        if lower.endswith(ending):
            return parse
    return None

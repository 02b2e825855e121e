"""Parsers turn each format into titled sections; bad bytes give a reason, not an exception."""

import pytest

from pipelines.parsing import UnparsableFile, parser_for
from pipelines.text import MAX_HEADING_CHARS, decode_text

RST = """\
:mod:`json` --- JSON encoder
============================

.. module:: json
   :synopsis: Encode and decode JSON.

.. index:: single: JSON

Intro with :func:`dumps` and ``literal`` text and a `link <https://example.org>`_.

Basic Usage
-----------

.. function:: dumps(obj, *, indent=None)

   Serialize *obj* to a JSON formatted :class:`str`.

   .. versionchanged:: 3.6
      Accepts bytes.

.. note::
   A note worth keeping.

Command line
------------

Run ``python -m json.tool``.
"""


def parse(name: str, data: bytes):
    return parser_for(name)(data)


def test_rst_headings_object_descriptions_and_inline_markup():
    title, sections = parse("json.rst.txt", RST.encode())
    assert title == "json --- JSON encoder"
    headings = [s.headings for s in sections]
    assert headings == [
        ("json --- JSON encoder", "json"),
        ("json --- JSON encoder", "Basic Usage", "dumps(obj, *, indent=None)"),
        ("json --- JSON encoder", "Command line"),
    ]
    text = "\n".join(s.text for s in sections)
    assert "Intro with dumps and literal text and a link." in text
    assert "Serialize *obj* to a JSON formatted str." in text
    assert "Versionchanged: 3.6" in text and "Note:" in text and "A note worth keeping." in text
    for markup in (":func:", ":synopsis:", "single: JSON", ".. ", "``"):
        assert markup not in text


def test_markdown_headings_ignore_code_fences():
    title, sections = parse("a.md", b"# Top\n\nintro\n\n## Sub\n\n```\n# not a heading\n```\n\n### Deep\n\nend\n")
    assert title == "Top"
    assert [s.headings for s in sections] == [("Top",), ("Top", "Sub"), ("Top", "Sub", "Deep")]
    assert "# not a heading" in sections[1].text


def test_html_sections_follow_headings_and_drop_navigation():
    html = b"""<html><head><title>Page</title><script>var x=1;</script></head><body>
    <nav>Home | Next</nav><h1>Guide</h1><p>First <b>para</b>.</p>
    <h2>Install</h2><ul><li>pip install it</li></ul><pre>code  block</pre></body></html>"""
    title, sections = parse("g.html", html)
    assert title == "Guide"
    assert [s.headings for s in sections] == [("Guide",), ("Guide", "Install")]
    assert sections[0].text == "First para ."
    assert "pip install it" in sections[1].text and "code  block" in sections[1].text
    assert "var x" not in "".join(s.text for s in sections) and "Home" not in sections[0].text


def test_plain_text_is_one_section_titled_by_its_first_line():
    title, sections = parse("readme.txt", b"Read me\n\nsome text\n\n\n\nmore")
    assert title == "Read me" and len(sections) == 1 and sections[0].text == "Read me\n\nsome text\n\nmore"


def test_pdf_pages_become_sections():
    import io

    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    title, sections = parse("blank.pdf", buffer.getvalue())
    assert sections == []  # a page with no text yields no section: the caller skips the file
    with pytest.raises(UnparsableFile, match="unreadable PDF"):
        parse("bad.pdf", b"%PDF-1.7 garbage")


def test_invalid_utf8_names_the_byte_and_offset():
    with pytest.raises(UnparsableFile, match=r"not valid UTF-8: byte 0xff at offset 3"):
        parse("x.md", b"abc\xffdef")


def test_unknown_extension_has_no_parser():
    assert parser_for("image.png") is None
    assert parser_for("NOTES.MD") is not None


def test_html_nested_deeper_than_the_recursion_limit_keeps_all_its_text():
    depth = 20_000
    html = (
        "<html><body><h1>Deep</h1>"
        + "<div>" * depth
        + "loose words <b>in bold</b>"
        + "<p>a paragraph</p>"
        + "</div>" * depth
        + "</body></html>"
    ).encode()
    title, sections = parse("deep.html", html)
    assert title == "Deep" and sections[0].text == "loose words in bold\n\na paragraph"


def test_html_table_rows_are_lines_of_cells():
    html = b"<table><tr><th>package</th><th>size</th></tr><tr><td>aptitude</td><td>4 MB</td></tr></table>"
    assert parse("t.html", html)[1][0].text == "package | size\n\naptitude | 4 MB"


@pytest.mark.parametrize(
    "name, markup",
    [
        ("index.html", "<h2>{heading}</h2><p>after</p>"),
        ("index.md", "## {heading}\n\nafter\n"),
        ("index.rst", "{heading}\n{underline}\n\nafter\n"),
    ],
)
def test_a_heading_thousands_of_characters_long_is_content(name, markup):
    heading = " ".join(f"term{n}" for n in range(1000))  # 8,889 characters
    data = markup.format(heading=heading, underline="=" * len(heading)).encode()
    title, [section] = parse(name, data)
    assert title == section.headings[-1] and len(title) <= MAX_HEADING_CHARS and title.endswith("…")
    assert title.startswith("term0 term1 term2") and section.text.startswith(heading)


@pytest.mark.parametrize(
    "data, text",
    [
        ("# Título\n\nañadido".encode("utf-16"), "# Título\n\nañadido"),
        ("# Título\n\nañadido".encode("utf-8-sig"), "# Título\n\nañadido"),
        (
            "# Título\n\n".encode() + "añadido en Latin-1, ".encode("cp1252") + b"\x93quoted\x94",
            "# Título\n\nañadido en Latin-1, \u201cquoted\u201d",
        ),
    ],
)
def test_text_is_decoded_by_byte_order_mark_or_as_utf8_with_stray_legacy_bytes(data, text):
    assert decode_text(data) == text


def test_text_mostly_in_another_encoding_is_refused_with_the_first_bad_byte():
    with pytest.raises(UnparsableFile, match=r"^not valid UTF-8: byte 0xf0 at offset 0 and \d+ more"):
        decode_text("Привет, мир: текст в кодировке KOI8-R".encode("koi8-r"))

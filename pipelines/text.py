"""Text helpers every parser shares: bytes to text, headings that are really content, blank lines."""

from __future__ import annotations

import codecs
import re


class UnparsableFile(ValueError):
    """The file cannot be turned into text; the message is the reason recorded for skipping it."""


# UTF-32's little-endian mark begins with UTF-16's: it is tried first.
_BOM_CODECS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# A file whose undecodable bytes are at most this share of it is UTF-8 with some legacy bytes (an
# edit in another editor, a pasted paragraph, Latin-1 accents): those are read as Windows-1252.
# Text in another encoding (KOI8-R, Shift-JIS, ...) is mostly such bytes, and is refused.
_MAX_STRAY_BYTE_SHARE = 0.10


def bom_codec(data: bytes) -> str | None:
    """The codec named by the byte order mark `data` starts with, if any."""
    return next((codec for bom, codec in _BOM_CODECS if data.startswith(bom)), None)


def _stray_bytes_as_windows_1252(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):  # an error handler for decoding only
        raise error
    stray = error.object[error.start : error.end]
    # Five bytes are undefined in Windows-1252; Latin-1 maps every byte.
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in stray), error.end


codecs.register_error("ragyard-stray-windows-1252", _stray_bytes_as_windows_1252)


def decode_text(data: bytes) -> str:
    """Text from a file's bytes: by its byte order mark if it has one, else UTF-8, with a few
    stray legacy bytes read as Windows-1252."""
    codec = bom_codec(data)
    if codec:
        try:
            return data.decode(codec)
        except UnicodeDecodeError as e:
            raise UnparsableFile(f"not valid {codec} after its byte order mark: {e.reason} at offset {e.start}") from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        stray = data.decode("utf-8", errors="replace").count("\ufffd")
        if stray > len(data) * _MAX_STRAY_BYTE_SHARE:
            raise UnparsableFile(
                f"not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} and {stray - 1} more "
                "(text in another encoding?)"
            ) from e
        return data.decode("utf-8", errors="ragyard-stray-windows-1252")


# A "heading" longer than this is content (index pages and broken markup put thousands of
# characters in one heading element): it stays in the text, and a short form names the section.
MAX_HEADING_CHARS = 200
_ELLIPSIS = "…"


def short_heading(text: str) -> str:
    """`text`, or its first words within MAX_HEADING_CHARS and "…"."""
    if len(text) <= MAX_HEADING_CHARS:
        return text
    cut = text[: MAX_HEADING_CHARS - len(_ELLIPSIS)]
    return (cut.rsplit(" ", 1)[0] or cut) + _ELLIPSIS


def is_overlong_heading(text: str) -> bool:
    return len(text) > MAX_HEADING_CHARS


def collapse_blank_lines(text: str) -> str:
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", text)

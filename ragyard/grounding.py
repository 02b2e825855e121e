"""Is what an answer states checkably in its sources? The claims a reader can check by looking.

A small model's typical error on documentation is a wrong number or a name the page does not use
("the default is 1000" where the page says 10, `os.path.joinpath` for `os.path.join`). Those are
the claims checked here: numbers, option flags, code spans and code-like names (dotted, snake_case,
camelCase, calls). A claim is supported when it appears in the sources the model was given (the
retrieved passages, the question). Prose is not judged: an answer with no checkable claim is
trivially grounded. Used by the router to report unsupported claims and flag their answers for
review, and by the answer eval to measure groundedness.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass

_CODE_SPAN = re.compile(r"`([^`\n]{1,200})`")
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s", re.M)
_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,_]\d+)*(?![\w])")
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(\))?")
_SEPARATOR = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")


def _code_like(name: str) -> bool:
    """Names a reader would check against the docs; plain words are prose."""
    bare = name.removesuffix("()")
    if all(len(part) == 1 for part in bare.split(".")):
        return False  # "e.g", "i.e", a variable called x
    return (
        name.endswith("()")
        or "." in bare
        or ("_" in bare.strip("_") and len(bare) > 2)
        or bool(re.search(r"[a-z][A-Z]", bare))
    )


def _number(text: str) -> str:
    return _SEPARATOR.sub("", text).rstrip(".,")


def claims(answer: str) -> list[str]:
    """The checkable claims of an answer, in order, each once."""
    text = _LIST_MARKER.sub(" ", _CITATION.sub(" ", answer))
    found: list[str] = []
    for span in _CODE_SPAN.findall(text):
        found += [m.group().removesuffix("()") for m in _NAME.finditer(span) if not keyword.iskeyword(m.group())]
        found += [_number(m.group()) for m in _NUMBER.finditer(span)]
        found += _OPTION.findall(span)
    prose = _CODE_SPAN.sub(" ", text)
    found += [m.group().removesuffix("()") for m in _NAME.finditer(prose) if _code_like(m.group())]
    found += _OPTION.findall(prose)
    found += [_number(m.group()) for m in _NUMBER.finditer(prose)]
    return [c for c in dict.fromkeys(found) if len(c) > 1 or c.isdigit()]


def _supported(claim: str, sources: str) -> bool:
    if claim[0].isdigit():
        return re.search(rf"(?<![\w.]){re.escape(claim)}(?![\w]|\.\d)", sources) is not None
    if re.search(rf"(?<![\w-]){re.escape(claim)}(?![\w])", sources):
        return True
    # A qualified name whose parts the sources name apart ("str.partition" under a `str` heading).
    parts = claim.split(".")
    return len(parts) > 1 and all(re.search(rf"(?<![\w]){re.escape(p)}(?![\w])", sources) for p in parts)


@dataclass(frozen=True)
class Grounding:
    claims: tuple[str, ...]
    unsupported: tuple[str, ...]

    @property
    def score(self) -> float:
        """The share of checkable claims found in the sources; 1.0 when there is nothing to check."""
        return 1.0 - len(self.unsupported) / len(self.claims) if self.claims else 1.0

    def wire(self) -> dict:
        return {"claims": len(self.claims), "unsupported": list(self.unsupported), "score": round(self.score, 4)}


def grounding(answer: str, sources: Iterable[str]) -> Grounding:
    """Which checkable claims of `answer` appear in none of `sources`."""
    joined = _SEPARATOR.sub("", "\n".join(sources))
    found = tuple(claims(answer))
    return Grounding(found, tuple(c for c in found if not _supported(c, joined)))

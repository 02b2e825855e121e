"""Guard a stream of generated text: check windows of it, release only text the policy lets through.

The router feeds model chunks to an `OutputGuard` (or wraps its chunk iterator in `guard_stream`).
The guard never releases the last `hold_chars` characters until more text (or the end) arrives,
and never cuts inside a PII finding or a word, so a secret split across chunks
("...mail me at jo" + "hn@example.com") is checked whole before any of it leaves. When the policy
redacts, the released text is the redacted text; when it blocks or holds the answer for review,
`StreamBlocked` is raised and nothing more is released; placeholders of a reversible policy are put back (`restore`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from ragyard.contracts.safety import WITHHOLDING, CheckResponse, Finding, restore

CheckFn = Callable[[str], Awaitable[CheckResponse]]

_WHITESPACE = re.compile(r"\s")


class StreamBlocked(Exception):
    """The policy withheld the rest of the stream (block, or review); `response` holds the action and
    the findings of the window that tripped it."""

    def __init__(self, response: CheckResponse):
        super().__init__(f"output blocked by safety policy: {[f.type for f in response.findings]}")
        self.response = response


def safe_cut(text: str, findings: list[Finding], limit: int, force: bool) -> int:
    """The largest cut <= limit that splits neither a PII finding nor a word; 0 if there is none.

    With `force` (the held text grew past its bound without whitespace) a cut inside a word is taken.
    """
    spans = [(f.start, f.end) for f in findings if f.category == "pii"]
    cut = max(0, limit)
    while cut > 0:
        inside = [start for start, end in spans if start < cut < end]
        if inside:
            cut = min(inside)
            continue
        if force or cut == len(text) or _WHITESPACE.match(text, cut - 1):
            return cut
        # Back to just after the last whitespace before the cut.
        last = max((m.end() for m in _WHITESPACE.finditer(text, 0, cut)), default=0)
        if last == 0:
            return 0
        cut = last
    return 0


class OutputGuard:
    """Feed chunks in order, emit what `feed` and `finish` return; raises StreamBlocked on a block.

    check: checks one window of text (bind direction="output" and the policy, e.g.
      `lambda text: client.check(text, "output", policy)`).
    hold_chars: characters always held back until more text arrives; longer than the longest
      secret you expect to see split (an IBAN is 34, a card 19, an email rarely above 64).
    release_chars: check only once this many characters beyond the held tail are waiting,
      so a token-by-token stream costs one check per ~release_chars characters, not per token.
    max_hold_chars: past this, text without whitespace (a long token) is released anyway.
    restore_placeholders: placeholders from the input check to turn back into originals in the
      released text (reversible pseudonymization); applied after the output check.
    """

    def __init__(
        self,
        check: CheckFn,
        hold_chars: int = 96,
        release_chars: int = 32,
        max_hold_chars: int = 4096,
        restore_placeholders: dict[str, str] | None = None,
    ):
        if hold_chars < 0 or release_chars < 1 or max_hold_chars <= hold_chars:
            raise ValueError("need hold_chars >= 0, release_chars >= 1 and max_hold_chars > hold_chars")
        self.check = check
        self.hold_chars = hold_chars
        self.release_chars = release_chars
        self.max_hold_chars = max_hold_chars
        self.restore_placeholders = dict(restore_placeholders or {})
        self.pending = ""
        self.released_chars = 0  # characters of the original stream already released
        self.findings: list[Finding] = []  # offsets in the original stream
        self.placeholders: dict[str, str] = {}  # placeholders the output check itself made
        self._seen: set[tuple] = set()

    async def feed(self, chunk: str) -> str:
        self.pending += chunk
        if len(self.pending) < self.hold_chars + self.release_chars:
            return ""
        window = self.pending
        response = await self._checked(window)
        force = len(window) > self.max_hold_chars
        cut = safe_cut(window, response.findings, len(window) - self.hold_chars, force)
        if cut == 0:
            return ""
        return await self._release(cut, response)

    async def finish(self) -> str:
        """Check and release whatever is still held; call once, after the last chunk."""
        if not self.pending:
            return ""
        return await self._release(len(self.pending), await self._checked(self.pending))

    async def _checked(self, text: str) -> CheckResponse:
        response = await self.check(text)
        if response.action in WITHHOLDING:
            self.pending = ""
            raise StreamBlocked(response)
        return response

    async def _release(self, cut: int, window_response: CheckResponse) -> str:
        prefix = self.pending[:cut]
        response = window_response
        if window_response.action == "redact" and cut < len(self.pending):
            # The window's redacted text cannot be split at `cut` reliably: check the prefix alone.
            response = await self._checked(prefix)
        out = response.redacted_text if response.action == "redact" and response.redacted_text is not None else prefix
        self._record(response.findings, cut)
        self.placeholders.update(response.placeholders)
        self.pending = self.pending[cut:]
        self.released_chars += cut
        return restore(out, self.restore_placeholders)

    def _record(self, findings: list[Finding], cut: int) -> None:
        for f in findings:
            if f.start >= cut:
                continue  # held back: it is checked again with the next window
            shifted = f.model_copy(update={"start": f.start + self.released_chars, "end": f.end + self.released_chars})
            key = (shifted.category, shifted.type, shifted.start, shifted.end)
            if key not in self._seen:
                self._seen.add(key)
                self.findings.append(shifted)


async def guard_stream(chunks: AsyncIterable[str], check: CheckFn, **options) -> AsyncIterator[str]:
    """Yield the safe text of `chunks` (see OutputGuard for `options`); raises StreamBlocked on a block."""
    guard = OutputGuard(check, **options)
    async for chunk in chunks:
        if safe := await guard.feed(chunk):
            yield safe
    if tail := await guard.finish():
        yield tail

"""Nothing is stored or extracted from before the safety bento has pseudonymized it: PII becomes
reversible placeholders (<EMAIL_ADDRESS_3f2a9c1b>) whose originals are never kept, and a text the policy
blocks (a prompt injection that would sit in every later prompt) is refused."""

from __future__ import annotations

import re

from bentos.memory.errors import DependencyDown, refused, too_large
from ragyard.clients.safety import SafetyClient
from ragyard.contracts.safety import CheckRequest
from ragyard.kit.errors import Rejected, Unavailable

# A reversible placeholder, as the safety bento writes it (bentos/safety/redaction.py).
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9a-f]{8}>")


class Pseudonymizer:
    def __init__(self, safety: SafetyClient, policy: str):
        self.safety = safety
        self.policy = policy

    async def texts(self, texts: list[str], field: str) -> list[str]:
        """`texts` with their PII replaced by placeholders; Refused names `field` when the policy blocks one."""
        items = [CheckRequest(text=text, direction="input", policy=self.policy) for text in texts]
        try:
            results = await self.safety.check_batch(items)
        except Unavailable as exc:
            raise DependencyDown("safety", exc.message) from exc
        except Rejected as exc:
            if exc.error.status == 413:
                raise too_large(f"{field}: {exc.error.message}", field) from exc
            # An unknown policy or a bound the bento refuses: a setting to fix, not the caller's fault.
            raise DependencyDown("safety", f"refused the pseudonymization ({exc})") from exc
        out = []
        for text, result in zip(texts, results, strict=True):
            if not result.allowed:
                categories = sorted({finding.category for finding in result.findings})
                raise refused(f"{field}: refused by the safety policy ({', '.join(categories)})", field)
            out.append(result.redacted_text if result.redacted_text is not None else text)
        return out


def invented_placeholders(text: str, sources: list[str]) -> set[str]:
    """Placeholders in `text` that none of `sources` holds: a model that makes one up stores nonsense."""
    known = {match for source in sources for match in PLACEHOLDER.findall(source)}
    return set(PLACEHOLDER.findall(text)) - known

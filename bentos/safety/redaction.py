"""Replace PII findings in a text: fixed tags (<EMAIL_ADDRESS>) or reversible placeholders.

A reversible placeholder carries a keyed hash of the original (<EMAIL_ADDRESS_3f2a9c1b>), so the
same value gets the same placeholder in every window of a stream and every request of a process,
and two values never share one; `ragyard.contracts.safety.restore` maps placeholders back.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from ragyard.contracts.safety import Finding


def placeholder_pattern(entity_types: list[str]) -> re.Pattern:
    """What `Redactor` writes in place of a finding of these types: a fixed tag (<EMAIL_ADDRESS>)
    or a reversible placeholder (<EMAIL_ADDRESS_3f2a9c1b>). Text that already is one holds no PII,
    so detectors must not flag it again; other <UPPER_CASE> text (<JOHN_SMITH>) is not exempt."""
    names = "|".join(re.escape(t) for t in sorted(entity_types, key=len, reverse=True))
    return re.compile(rf"<(?:{names})(?:_[0-9a-f]{{8}})?>")


class Redactor:
    def __init__(self, key: str = ""):
        self._key = key.encode() if key else secrets.token_bytes(32)
        self._engine = AnonymizerEngine()

    def placeholder(self, entity_type: str, original: str) -> str:
        digest = hashlib.blake2b(f"{entity_type}\0{original}".encode(), key=self._key, digest_size=4).hexdigest()
        return f"<{entity_type}_{digest}>"

    def redact(self, text: str, findings: list[Finding], reversible: bool) -> tuple[str, dict[str, str]]:
        """The text with every PII finding replaced, and placeholder -> original when reversible."""
        pii = [f for f in findings if f.category == "pii"]
        if not pii:
            return text, {}
        results = [RecognizerResult(entity_type=f.type, start=f.start, end=f.end, score=f.score) for f in pii]
        placeholders: dict[str, str] = {}
        if reversible:

            def operator(entity_type: str) -> OperatorConfig:
                def pseudonym(original: str) -> str:
                    name = self.placeholder(entity_type, original)
                    placeholders[name] = original
                    return name

                return OperatorConfig("custom", {"lambda": pseudonym})

            operators = {entity_type: operator(entity_type) for entity_type in {f.type for f in pii}}
        else:
            operators = {"DEFAULT": OperatorConfig("replace")}  # "<ENTITY_TYPE>"
        return self._engine.anonymize(text=text, analyzer_results=results, operators=operators).text, placeholders

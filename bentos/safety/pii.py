"""PII and secrets: Presidio's analyzer over a spaCy model shipped on PyPI, offline, plus our recognizers."""

from __future__ import annotations

import re

import tldextract

from bentos.safety.recognizers import (
    SECRET_TYPES,
    LuhnCardRecognizer,
    address_recognizer,
    phone_recognizer,
    secret_recognizers,
)
from bentos.safety.redaction import placeholder_pattern
from ragyard.contracts.safety import Finding

# Presidio's email recognizer calls tldextract.extract(), whose default extractor fetches the public
# suffix list over the network. Use the snapshot bundled with tldextract instead: no fetch, no cache dir.
tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

# spaCy labels Presidio maps to its entity names; ORGANIZATION and the rest are left out (noisy).
_NER_MAPPING = {
    "PER": "PERSON",
    "PERSON": "PERSON",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "FAC": "LOCATION",
    "LOCATION": "LOCATION",
    "NORP": "NRP",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
_NER_IGNORED = [
    "ORG",
    "ORGANIZATION",
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
]


def expand_entities(entities: list[str]) -> list[str]:
    """Settings name secrets as one group, "SECRET"; Presidio knows each token format by its own name."""
    out: list[str] = []
    for entity in entities:
        out.extend(SECRET_TYPES if entity == "SECRET" else [entity])
    return out


class PiiDetector:
    def __init__(self, spacy_model: str, entities: list[str], allow_list: list[str] | None = None):
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        nlp_engine = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": spacy_model}],
                "ner_model_configuration": {
                    "model_to_presidio_entity_mapping": _NER_MAPPING,
                    "labels_to_ignore": _NER_IGNORED,
                    "low_confidence_score_multiplier": 0.4,
                },
            }
        ).create_engine()
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        for recognizer in [*secret_recognizers(), address_recognizer(), phone_recognizer(), LuhnCardRecognizer()]:
            registry.add_recognizer(recognizer)
        self.entities = expand_entities(entities)
        self.placeholders = placeholder_pattern(self.entities)
        self.allow_list = list(allow_list or [])
        self.analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])

    def detect(self, text: str, threshold: float = 0.0) -> list[Finding]:
        results = self.analyzer.analyze(
            text=text, language="en", entities=self.entities, score_threshold=threshold, allow_list=self.allow_list
        )
        findings = [
            Finding(category="pii", type=r.entity_type, start=r.start, end=r.end, score=round(min(r.score, 1.0), 4))
            for r in results
        ]
        return sorted(
            drop_contained(outside_placeholders(text, findings, self.placeholders)), key=lambda f: (f.start, -f.end)
        )


def outside_placeholders(text: str, findings: list[Finding], placeholders: re.Pattern) -> list[Finding]:
    """Findings with our own placeholders cut out: spaCy may tag "EMAIL_ADDRESS_69dd69c8>" as a PERSON
    when a redacted input comes back in an answer. A finding inside a placeholder is dropped, one that
    runs over a placeholder's edge is trimmed to the text outside it, one that encloses it is kept."""
    spans = [m.span() for m in placeholders.finditer(text)]
    kept: list[Finding] = []
    for f in findings:
        start, end = f.start, f.end
        for p_start, p_end in spans:
            if p_start <= start < p_end:
                start = p_end
            if p_start < end <= p_end:
                end = p_start
        piece = text[start:end] if start < end else ""
        if piece.strip():
            start += len(piece) - len(piece.lstrip())
            end -= len(piece) - len(piece.rstrip())
            kept.append(f if (start, end) == (f.start, f.end) else f.model_copy(update={"start": start, "end": end}))
    return kept


def drop_contained(findings: list[Finding]) -> list[Finding]:
    """Drop a finding that lies inside a longer one scoring at least as high ("Malik Lodge" as a
    PERSON inside a STREET_ADDRESS): the longer one says more, and redacts the same characters."""
    return [
        f
        for f in findings
        if not any(
            o is not f
            and o.start <= f.start
            and f.end <= o.end
            and (o.end - o.start) > (f.end - f.start)
            and o.score >= f.score
            for o in findings
        )
    ]

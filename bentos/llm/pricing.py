"""Prices per 1,000 tokens: configured for a provider, derived for a self-hosted model.

A self-hosted model costs what its machine costs while it works: at `machine_cost_per_hour` and a
measured `tokens/s`, 1,000 tokens cost cost_per_hour / 3600 / (tokens/s) * 1000. Prompt tokens
(processed in parallel) and completion tokens (one at a time) have their own measured rates.
"""

from __future__ import annotations

from dataclasses import dataclass

# What a throughput probe asks: short, so that its time is nearly all generation.
PROBE_MESSAGES = [{"role": "user", "content": "Explain what a Python list comprehension is."}]


@dataclass
class ThroughputMeter:
    """Running prompt and generation rates of one model (exponentially weighted, recent runs count more)."""

    weight: float = 0.3
    prompt_tok_s: float | None = None
    decode_tok_s: float | None = None

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self.weight) * old + self.weight * new

    def record(self, prompt_tokens: int, ttft_s: float, completion_tokens: int, decode_s: float) -> None:
        """One generation: `ttft_s` to the first token (the prompt), `decode_s` for the tokens after it."""
        if prompt_tokens > 0 and ttft_s > 0:
            self.prompt_tok_s = self._mix(self.prompt_tok_s, prompt_tokens / ttft_s)
        if completion_tokens > 1 and decode_s > 0:
            self.decode_tok_s = self._mix(self.decode_tok_s, (completion_tokens - 1) / decode_s)


def price_per_1k(machine_cost_per_hour: float, tokens_per_s: float | None) -> float:
    """USD per 1,000 tokens at this rate; 0.0 until the rate has been measured."""
    if not tokens_per_s:
        return 0.0
    return round(machine_cost_per_hour / 3600 / tokens_per_s * 1000, 8)

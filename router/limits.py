"""Per-key limits: requests and tokens per minute, and a currency budget with reservations.

Before a request is dispatched, `Limits.reserve` runs one `BEGIN IMMEDIATE` transaction that checks
the minute windows and the budget and, if all pass, records the request and reserves its
worst-case cost. Concurrent requests (threads or router worker processes) serialize on that
transaction, so the sum of reservations and spending never exceeds a budget. After the response,
`settle` replaces the reservation by the real cost (priced from the usage).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from router.keys import COMPLETION_RETENTION_S, KeyStore
from router.sqlite import immediate

WINDOW_S = 60.0
# A reservation this old belongs to a request whose process died: it no longer holds budget.
STALE_RESERVATION_S = 3600.0


class LimitExceeded(Exception):
    """A 429: `code` says which limit; `retry_after_s` is None when waiting will not help."""

    def __init__(self, code: str, message: str, retry_after_s: float | None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Reservation:
    id: int
    event_id: int
    key_id: str
    amount: float


class Limits:
    def __init__(self, store: KeyStore):
        self.store = store
        self.conn = store.conn

    def reserve(self, key_id: str, worst_cost: float, tokens: int, now: float | None = None,
                completion_id: str | None = None) -> Reservation:
        """Count one request of up to `tokens` tokens and reserve `worst_cost`, or raise LimitExceeded.

        `completion_id` (the answer's trace id) is recorded as the key's, in the same transaction,
        so that only this key may later send feedback on it."""
        now = time.time() if now is None else now
        with self.store.lock, immediate(self.conn):
            budget, spent, rpm, tpm = self.conn.execute(
                "SELECT budget, spent, rpm, tpm FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            self.conn.execute("DELETE FROM reservations WHERE created_at < ?", (now - STALE_RESERVATION_S,))
            self.conn.execute("DELETE FROM usage_events WHERE at < ?", (now - WINDOW_S,))
            if rpm is not None or tpm is not None:
                self._check_window(key_id, rpm, tpm, tokens, now)
            if budget is not None:
                reserved = self.conn.execute(
                    "SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE key_id = ?", (key_id,)).fetchone()[0]
                if spent + worst_cost > budget:
                    raise LimitExceeded(
                        "insufficient_quota",
                        f"budget exhausted: spent {spent:.6f} of {budget:.6f}; this request may cost up to "
                        f"{worst_cost:.6f} (lower max_tokens or raise the key's budget)", None)
                if spent + reserved + worst_cost > budget:
                    # Requests in flight hold the rest; their real cost is usually lower than reserved.
                    raise LimitExceeded(
                        "budget_reserved",
                        f"budget held by requests in flight: spent {spent:.6f} + reserved {reserved:.6f} of "
                        f"{budget:.6f}; this request may cost up to {worst_cost:.6f}", 1.0)
            event_id = self.conn.execute(
                "INSERT INTO usage_events (key_id, at, tokens) VALUES (?,?,?)", (key_id, now, tokens)).lastrowid
            reservation_id = self.conn.execute(
                "INSERT INTO reservations (key_id, amount, created_at) VALUES (?,?,?)",
                (key_id, worst_cost, now)).lastrowid
            if completion_id is not None:
                self.conn.execute("INSERT OR REPLACE INTO completions (trace_id, key_id, created_at) VALUES (?,?,?)",
                                  (completion_id, key_id, now))
                self.conn.execute("DELETE FROM completions WHERE created_at < ?", (now - COMPLETION_RETENTION_S,))
        return Reservation(reservation_id, event_id, key_id, worst_cost)

    def _check_window(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> None:
        rows = self.conn.execute(
            "SELECT at, tokens FROM usage_events WHERE key_id = ? AND at >= ? ORDER BY at",
            (key_id, now - WINDOW_S)).fetchall()
        if rpm is not None and len(rows) >= rpm:
            wait = rows[len(rows) - rpm][0] + WINDOW_S - now
            raise LimitExceeded("rate_limit_exceeded", f"rate limit: {rpm} requests per minute", max(wait, 0.001))
        if tpm is not None:
            if tokens > tpm:
                raise LimitExceeded(
                    "tokens_exceed_limit",
                    f"this request may use {tokens} tokens, more than the key's {tpm} tokens per minute "
                    f"(lower max_tokens or the prompt)", None)
            used = sum(t for _, t in rows)
            if used + tokens > tpm:
                # Wait until enough of the window's oldest tokens expire.
                freed, wait = 0, WINDOW_S
                for at, t in rows:
                    freed += t
                    if used - freed + tokens <= tpm:
                        wait = at + WINDOW_S - now
                        break
                raise LimitExceeded("rate_limit_exceeded", f"rate limit: {tpm} tokens per minute", max(wait, 0.001))

    def settle(self, reservation: Reservation, cost: float, tokens: int) -> None:
        """Replace the reservation by the real cost and the token estimate by the real count."""
        with self.store.lock, immediate(self.conn):
            deleted = self.conn.execute("DELETE FROM reservations WHERE id = ?", (reservation.id,)).rowcount
            if deleted:
                self.conn.execute("UPDATE api_keys SET spent = spent + ? WHERE id = ?", (cost, reservation.key_id))
            self.conn.execute("UPDATE usage_events SET tokens = ? WHERE id = ?", (tokens, reservation.event_id))


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))

"""Per-key limits: requests and tokens per minute, and a currency budget with reservations.

Before a request is dispatched, `Limits.reserve` runs one transaction that checks the minute
windows and the budget and, if all pass, records the request and reserves its worst-case cost.
Concurrent requests of a key (threads, router worker processes or replicas) take that transaction
one at a time (`router.state.transaction` with the key's lock: SQLite's BEGIN IMMEDIATE, a
Postgres advisory lock), so the sum of reservations and spending never exceeds a budget. After
the response, `settle` replaces the reservation by the real cost (priced from the usage).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, text

from router.keys import COMPLETION_RETENTION_S, KeyStore
from router.state import transaction

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
        self.engine = store.engine

    def reserve(
        self, key_id: str, worst_cost: float, tokens: int, now: float | None = None, completion_id: str | None = None
    ) -> Reservation:
        """Count one request of up to `tokens` tokens and reserve `worst_cost`, or raise LimitExceeded.

        `completion_id` (the answer's trace id) is recorded as the key's, in the same transaction,
        so that only this key may later send feedback on it."""
        now = time.time() if now is None else now
        with transaction(self.engine, lock=f"key:{key_id}") as conn:
            budget, spent, rpm, tpm = conn.execute(
                text("SELECT budget, spent, rpm, tpm FROM api_keys WHERE id = :key"), {"key": key_id}
            ).one()
            # Only this key's expired rows: other keys' rows belong to transactions under other locks.
            conn.execute(
                text("DELETE FROM reservations WHERE key_id = :key AND created_at < :stale"),
                {"key": key_id, "stale": now - STALE_RESERVATION_S},
            )
            conn.execute(
                text("DELETE FROM usage_events WHERE key_id = :key AND at < :expired"),
                {"key": key_id, "expired": now - WINDOW_S},
            )
            if rpm is not None or tpm is not None:
                self._check_window(conn, key_id, rpm, tpm, tokens, now)
            if budget is not None:
                reserved = conn.execute(
                    text("SELECT COALESCE(SUM(amount), 0) FROM reservations WHERE key_id = :key"), {"key": key_id}
                ).scalar_one()
                if spent + worst_cost > budget:
                    raise LimitExceeded(
                        "insufficient_quota",
                        f"budget exhausted: spent {spent:.6f} of {budget:.6f}; this request may cost up to "
                        f"{worst_cost:.6f} (lower max_tokens or raise the key's budget)",
                        None,
                    )
                if spent + reserved + worst_cost > budget:
                    # Requests in flight hold the rest; their real cost is usually lower than reserved.
                    raise LimitExceeded(
                        "budget_reserved",
                        f"budget held by requests in flight: spent {spent:.6f} + reserved {reserved:.6f} of "
                        f"{budget:.6f}; this request may cost up to {worst_cost:.6f}",
                        1.0,
                    )
            event_id = conn.execute(
                text("INSERT INTO usage_events (key_id, at, tokens) VALUES (:key, :now, :tokens) RETURNING id"),
                {"key": key_id, "now": now, "tokens": tokens},
            ).scalar_one()
            reservation_id = conn.execute(
                text("INSERT INTO reservations (key_id, amount, created_at) VALUES (:key, :amount, :now) RETURNING id"),
                {"key": key_id, "amount": worst_cost, "now": now},
            ).scalar_one()
            if completion_id is not None:
                conn.execute(
                    text(
                        "INSERT INTO completions (trace_id, key_id, created_at) VALUES (:id, :key, :now) "
                        "ON CONFLICT (trace_id) DO UPDATE SET key_id = excluded.key_id, "
                        "created_at = excluded.created_at"
                    ),
                    {"id": completion_id, "key": key_id, "now": now},
                )
                # This key's expired rows only: other keys' rows are under other keys' locks.
                conn.execute(
                    text("DELETE FROM completions WHERE key_id = :key AND created_at < :expired"),
                    {"key": key_id, "expired": now - COMPLETION_RETENTION_S},
                )
        return Reservation(reservation_id, event_id, key_id, worst_cost)

    @staticmethod
    def _check_window(conn: Connection, key_id: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> None:
        rows = conn.execute(
            text("SELECT at, tokens FROM usage_events WHERE key_id = :key AND at >= :since ORDER BY at"),
            {"key": key_id, "since": now - WINDOW_S},
        ).all()
        if rpm is not None and len(rows) >= rpm:
            wait = rows[len(rows) - rpm][0] + WINDOW_S - now
            raise LimitExceeded("rate_limit_exceeded", f"rate limit: {rpm} requests per minute", max(wait, 0.001))
        if tpm is not None:
            if tokens > tpm:
                raise LimitExceeded(
                    "tokens_exceed_limit",
                    f"this request may use {tokens} tokens, more than the key's {tpm} tokens per minute "
                    f"(lower max_tokens or the prompt)",
                    None,
                )
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
        with transaction(self.engine, lock=f"key:{reservation.key_id}") as conn:
            deleted = conn.execute(text("DELETE FROM reservations WHERE id = :id"), {"id": reservation.id}).rowcount
            if deleted:
                conn.execute(
                    text("UPDATE api_keys SET spent = spent + :cost WHERE id = :key"),
                    {"cost": cost, "key": reservation.key_id},
                )
            conn.execute(
                text("UPDATE usage_events SET tokens = :tokens WHERE id = :id"),
                {"tokens": tokens, "id": reservation.event_id},
            )

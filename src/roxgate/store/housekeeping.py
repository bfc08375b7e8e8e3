"""Forgetting what is no longer needed, so that tables which only grow stay small.

Run now and then by every worker process (``Gateway``): each statement is an
index range delete, harmless when two processes run it at once. Messages and
their history are never deleted here (reports and audits read them); what
goes is what has served its purpose:

- Idempotency-Keys older than ``ROXGATE_IDEMPOTENCY_HOURS`` (a replay after that
  is a new request, SPEC.md §2);
- per-minute traffic counts older than ``TRAFFIC_KEEP_MS`` (the console's charts
  show the last day; reports read the messages table);
- console sessions past their expiry.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete

from roxgate.store import traffic
from roxgate.store.schema import console_sessions, idempotency_keys

TRAFFIC_KEEP_MS = 8 * 86_400_000  # a week and a day: "same time last week" stays possible


def tidy(conn: Connection, now_ms: int, idempotency_hours: float) -> dict[str, int]:
    """Delete what has expired; returns rows deleted per table."""
    keys_before = now_ms - int(idempotency_hours * 3_600_000)
    return {
        "idempotency_keys": conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.created_at < keys_before)
        ).rowcount,
        "traffic": traffic.prune(conn, now_ms - TRAFFIC_KEEP_MS),
        "console_sessions": conn.execute(
            delete(console_sessions).where(console_sessions.c.expires_at < now_ms)
        ).rowcount,
    }

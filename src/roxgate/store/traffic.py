"""Messages per minute by what happened to them, for the console's charts.

Counted in the transaction that made it happen (intake, submission, final
state), so the counts are exactly as durable as the change they count. Each
process writes its own rows (``owner``): processes sharing PostgreSQL never
wait for one another's row locks, and every process writes through its single
writer thread, so its own rows see no concurrency either.

``totals`` keeps the same counts in memory since the process started, for
``/metrics`` (a rolled-back transaction may have counted there already: a
metrics counter may run a hair ahead, the table never does).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Mapping

from sqlalchemy import Connection, delete, select, text

from roxgate.store.schema import traffic

# What is counted. ``accepted``: answered 0000 and stored; the others are states
# a message reaches (``failed`` includes 2062/2065 at submission and carrier
# failures; ``expired`` is 2064).
KINDS: tuple[str, ...] = ("accepted", "submitted", "delivered", "failed", "expired")

OWNER = f"{socket.gethostname()}:{os.getpid()}"[:64]
totals: Counter[str] = Counter()

_UPSERT = text(
    "INSERT INTO traffic (minute, kind, owner, count) VALUES (:minute, :kind, :owner, :n) "
    "ON CONFLICT (minute, kind, owner) DO UPDATE SET count = traffic.count + excluded.count"
)


def count(conn: Connection, counts: Mapping[str, int], at_ms: int) -> None:
    """Add ``counts`` (kind → messages) to the minute of ``at_ms``, in ``conn``'s transaction."""
    minute = at_ms // 60_000
    rows = [
        {"minute": minute, "kind": kind, "owner": OWNER, "n": n}
        for kind, n in sorted(counts.items())  # one lock order, whatever the caller's
        if n
    ]
    if rows:
        conn.execute(_UPSERT, rows)
        totals.update({r["kind"]: r["n"] for r in rows})


def per_minute(conn: Connection, since_ms: int, until_ms: int) -> dict[str, dict[int, int]]:
    """kind → {minute: messages} for the minutes from ``since_ms`` up to ``until_ms``,
    summed over every process. Minutes with nothing are absent."""
    rows = conn.execute(
        select(traffic.c.kind, traffic.c.minute, traffic.c.count).where(
            traffic.c.minute >= since_ms // 60_000, traffic.c.minute <= until_ms // 60_000
        )
    )
    out: dict[str, dict[int, int]] = {}
    for kind, minute, n in rows:
        per = out.setdefault(kind, {})
        per[minute] = per.get(minute, 0) + n
    return out


def prune(conn: Connection, before_ms: int) -> int:
    """Forget the minutes before ``before_ms`` (the charts show a day; reports read messages)."""
    return conn.execute(delete(traffic).where(traffic.c.minute < before_ms // 60_000)).rowcount

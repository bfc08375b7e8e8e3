"""Usage reports: messages, SMS parts and outcomes grouped by one dimension.

Reports read the ``messages`` table itself, so they are exact (the console's
charts read the per-minute ``traffic`` counters instead: cheap, but counting
events in the minute they happen). Rejected recipients were never stored as messages and
so never appear here.

A time range selects messages by intake time (``created_at``). Message ids
are UUIDv7, whose first 48 bits are the creation time in milliseconds, so the
range is also bounded on the primary key: the database walks the slice of
the id index that covers it instead of scanning the table, and intake does
not pay for an extra index on ``created_at``. ``created_at`` stays in the
WHERE so the bounds are exact.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Engine, Select, case, func, select

from roxgate.store.schema import messages

Dimension = Literal["account", "product", "day", "status", "country"]
DIMENSIONS: tuple[str, ...] = ("account", "product", "day", "status", "country")

# The key under which messages sent without a Product are reported.
NO_PRODUCT = "(none)"
TOTAL_KEY = "TOTAL"
COUNTERS: tuple[str, ...] = ("messages", "parts", "delivered", "failed", "expired", "pending")

# States a message passes through before it is final.
PENDING_STATUSES: tuple[str, ...] = ("queued", "submitting", "submitted")

DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# How far an id's embedded time may stray from the row's created_at: intake
# takes one timestamp for a whole request and makes the ids after it, and the
# UUIDv7 generator may run its clock ahead to stay monotonic. The id bounds are
# widened by this much; created_at then cuts exactly.
ID_TIME_SLACK_MS = 10 * 60_000


@dataclass(frozen=True, slots=True)
class UsageRow:
    key: str
    messages: int
    parts: int  # SMS parts, i.e. credits used
    delivered: int
    failed: int
    expired: int
    pending: int  # not yet final: queued, submitting or submitted


def parse_time_bound(text: str, *, end: bool = False) -> int:
    """Milliseconds since the epoch for a report's ``--from`` / ``--to``.

    ``YYYY-MM-DD`` is a UTC day: as a start, its first millisecond; as an end
    (``end=True``, an exclusive bound), the start of the next day, so the day
    itself is included. An ISO 8601 datetime is that instant either way; one
    without an offset is UTC. Raises ValueError with a message fit to show.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        if end:
            day += timedelta(days=1)
        return _epoch_ms(datetime(day.year, day.month, day.day, tzinfo=UTC))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"not a date (YYYY-MM-DD) or ISO 8601 time (e.g. 2030-01-31T09:00:00+10:00): {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _epoch_ms(when)


def _epoch_ms(when: datetime) -> int:
    # Exact integer arithmetic: timestamp() is a float, and * 1000 can land a
    # hair below a whole millisecond.
    return (when - _EPOCH) // timedelta(milliseconds=1)


def id_floor(at_ms: int) -> str:
    """The smallest UUIDv7 text made at ``at_ms`` or later (a prefix sorts first).

    Ids are lower-case hex with dashes at fixed places, so this compares the
    same under the C collation and the usual linguistic ones.
    """
    hex_ms = f"{max(at_ms, 0):012x}"
    return f"{hex_ms[:8]}-{hex_ms[8:]}"


def _group_key(by: Dimension) -> ColumnElement[Any]:
    if by == "account":
        return messages.c.account_id
    if by == "product":
        return messages.c.product
    if by == "day":
        # Integer division is the one day bucketing both dialects agree on;
        # the number is formatted as a date in Python.
        return messages.c.created_at // DAY_MS
    if by == "status":
        return messages.c.status
    if by == "country":
        return messages.c.dest_country
    raise ValueError(f"unknown report dimension {by!r}; expected one of {', '.join(DIMENSIONS)}")


def _format_key(by: Dimension, raw: Any) -> str:
    if by == "day":
        return (_EPOCH + timedelta(days=int(raw))).strftime("%Y-%m-%d")
    if by == "product" and not raw:
        return NO_PRODUCT
    return str(raw)


def _count_status(*statuses: str) -> ColumnElement[Any]:
    return func.sum(case((messages.c.status.in_(statuses), 1), else_=0))


def _query(
    by: Dimension, since_ms: int | None, until_ms: int | None, account_id: str | None
) -> Select[Any]:
    key = _group_key(by).label("key")
    query = select(
        key,
        func.count().label("messages"),
        func.sum(messages.c.parts).label("parts"),
        _count_status("delivered").label("delivered"),
        _count_status("failed").label("failed"),
        _count_status("expired").label("expired"),
        _count_status(*PENDING_STATUSES).label("pending"),
    ).group_by(key)
    if since_ms is not None:
        query = query.where(
            messages.c.id >= id_floor(since_ms - ID_TIME_SLACK_MS),
            messages.c.created_at >= since_ms,
        )
    if until_ms is not None:
        query = query.where(
            messages.c.id < id_floor(until_ms + ID_TIME_SLACK_MS),
            messages.c.created_at < until_ms,
        )
    if account_id is not None:
        query = query.where(messages.c.account_id == account_id)
    return query


def usage_report(
    engine: Engine,
    by: Dimension,
    since_ms: int | None = None,
    until_ms: int | None = None,
    account_id: str | None = None,
) -> list[UsageRow]:
    """Usage grouped by ``by``, for messages taken in at ``since_ms`` (inclusive)
    up to ``until_ms`` (exclusive), optionally of one account; sorted by key."""
    query = _query(by, since_ms, until_ms, account_id)
    with engine.connect() as conn:
        fetched = conn.execute(query).all()

    # Python merges what SQL keeps apart but the report shows as one key
    # (a NULL and an empty Product are both "(none)").
    merged: dict[str, list[int]] = {}
    for raw_key, *counts in fetched:
        into = merged.setdefault(_format_key(by, raw_key), [0] * len(COUNTERS))
        for i, n in enumerate(counts):
            into[i] += int(n or 0)
    return [UsageRow(k, *merged[k]) for k in sorted(merged)]


def total(rows: list[UsageRow]) -> UsageRow:
    """The sum of ``rows``, keyed "TOTAL"."""
    sums = [sum(getattr(r, c) for r in rows) for c in COUNTERS]
    return UsageRow(TOTAL_KEY, *sums)


# A cell starting with one of these is a formula to a spreadsheet; Product
# names come from API clients, so they are defused with a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def to_csv(rows: list[UsageRow], by: Dimension) -> str:
    """CSV: a header (the dimension, then the counters) and one line per key.

    There is no TOTAL line: every line is one key, so the file sums, filters
    and pivots correctly in a spreadsheet.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([by, *COUNTERS])
    for r in rows:
        writer.writerow([_safe_cell(r.key), *(getattr(r, c) for c in COUNTERS)])
    return out.getvalue()


def to_json(rows: list[UsageRow], by: Dimension) -> str:
    """JSON: ``{"by": …, "rows": [{<by>: key, counters…}], "total": {counters…}}``."""

    def row_dict(r: UsageRow) -> dict[str, Any]:
        d = asdict(r)
        return {by: d.pop("key"), **d}

    summed = asdict(total(rows))
    del summed["key"]
    doc = {"by": by, "rows": [row_dict(r) for r in rows], "total": summed}
    return orjson.dumps(doc).decode()

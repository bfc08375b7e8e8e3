"""ROX time formats: ``01-Jan-2030 00:00:01`` (SendLater) and ``… (UTC)`` stamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ROX_RE = re.compile(r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})\s*$")


def format_utc(ms: int) -> str:
    """``01-Jan-2030 00:00:01 (UTC)``, locale-independent."""
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return (
        f"{t.day:02d}-{_MONTH_NAMES[t.month - 1]}-{t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} (UTC)"
    )


def parse_local_time(value: str, tz_offset_minutes: int) -> datetime:
    """A SendLater value as an aware UTC datetime.

    ``UTC = local + offset`` (JavaScript ``getTimezoneOffset`` sign). An
    ISO-8601 value with its own offset uses that offset instead.
    Raises ValueError when the value is neither format or not a real time.
    """
    match = _ROX_RE.match(value)
    if match:
        day, mon, year, hour, minute, second = match.groups()
        month = _MONTHS.get(mon.lower())
        if month is None:
            raise ValueError(f"unknown month {mon!r}")
        local = datetime(int(year), month, int(day), int(hour), int(minute), int(second))
    else:
        text = value.strip()
        if not text or not text[0].isdigit():
            raise ValueError("not a date")
        local = datetime.fromisoformat(text)
        if local.tzinfo is not None:
            return local.astimezone(UTC)
    return (local + timedelta(minutes=tz_offset_minutes)).replace(tzinfo=UTC)

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from roxgate.rox.timefmt import format_utc, parse_local_time


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@pytest.mark.parametrize(
    ("value", "offset", "expected"),
    [
        ("01-Jan-2030 00:00:01", -600, "31-Dec-2029 14:00:01 (UTC)"),
        ("01-Jan-2030 00:00:01", 300, "01-Jan-2030 05:00:01 (UTC)"),
        ("01-jan-2030 00:00:01", 0, "01-Jan-2030 00:00:01 (UTC)"),
        ("1-JAN-2030 9:05:00", 0, "01-Jan-2030 09:05:00 (UTC)"),
        ("29-Feb-2028 23:59:59", -840, "29-Feb-2028 09:59:59 (UTC)"),
        ("2030-01-01T00:00:01", -600, "31-Dec-2029 14:00:01 (UTC)"),
        ("2030-01-01 00:00:01+10:00", 300, "31-Dec-2029 14:00:01 (UTC)"),
        ("2030-01-01T00:00:01Z", -600, "01-Jan-2030 00:00:01 (UTC)"),
    ],
)
def test_send_later_conversion(value: str, offset: int, expected: str) -> None:
    assert format_utc(ms(parse_local_time(value, offset))) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "tomorrow",
        "31-Feb-2030 00:00:00",
        "01-Foo-2030 00:00:00",
        "01-Jan-2030",
        "01-Jan-2030 25:00:00",
        "2030-13-01T00:00:00",
        "-1",
    ],
)
def test_bad_send_later(value: str) -> None:
    with pytest.raises(ValueError):
        parse_local_time(value, 0)


def test_format_utc_is_english_and_zero_padded() -> None:
    assert format_utc(ms(datetime(2030, 3, 5, 4, 3, 2, tzinfo=UTC))) == "05-Mar-2030 04:03:02 (UTC)"

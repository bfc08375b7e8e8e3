"""Usage reports (``roxgate report``) on SQLite and PostgreSQL: every dimension's
totals, the time range's exact bounds, the account filter and the output formats."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import uuid_utils
from sqlalchemy import Engine, insert, text

from roxgate.store.schema import messages
from roxgate.store.usage import (
    DIMENSIONS,
    UsageRow,
    id_floor,
    parse_time_bound,
    to_csv,
    to_json,
    total,
    usage_report,
)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def id_at(at_ms: int) -> str:
    """A UUIDv7 made at ``at_ms``, as intake would have made it then."""
    return str(uuid_utils.uuid7(nanoseconds=at_ms * 1_000_000))


A, B = "CI00000001", "CI00000002"
DAY0 = ms("2024-03-01T00:00:00")
DAY1 = ms("2024-03-02T00:00:00")
DAY2 = ms("2024-03-03T00:00:00")
HOUR = 3_600_000

# (created_at, account, Product, country, status, parts)
SENT: list[tuple[int, str, str | None, str, str, int]] = [
    (DAY0, A, "alerts", "AU", "delivered", 1),  # 1: first ms of day 0
    (DAY0 + 10 * HOUR, A, "alerts", "AU", "delivered", 2),  # 2
    (DAY1 - 1, A, None, "NZ", "failed", 1),  # 3: last ms of day 0
    (DAY1, A, "", "AU", "expired", 3),  # 4: first ms of day 1; empty Product
    (DAY1 + 12 * HOUR, B, "alerts", "GB", "queued", 1),  # 5
    (DAY1 + 12 * HOUR, B, "billing", "AU", "submitting", 1),  # 6: same ms as 5
    (DAY2 + 8 * HOUR, B, "billing", "NZ", "submitted", 2),  # 7
    (DAY2 + 9 * HOUR, B, "billing", "AU", "delivered", 1),  # 8
    (DAY2 + 9 * HOUR + 1, A, "=cmd()", "AU", "failed", 1),  # 9: a formula for spreadsheets
]


def insert_messages(engine: Engine, sent: list[tuple[int, str, str | None, str, str, int]]) -> None:
    rows = [
        {
            "id": id_at(at), "request_id": id_at(at), "account_id": account, "user_id": 1,
            "product": product, "dest_tn": "+61407555001", "dest_country": country,
            "text": "hi", "encoding": "gsm", "parts": parts, "due_at": at, "receipt_flag": 0,
            "reply_type": "N", "status": status, "created_at": at, "updated_at": at,
        }
        for at, account, product, country, status, parts in sent
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)


@pytest.fixture
def engine(store_factory: Any) -> Engine:
    engine: Engine = store_factory("usage")
    insert_messages(engine, SENT)
    return engine


def table(rows: list[UsageRow]) -> list[tuple[Any, ...]]:
    """(key, messages, parts, delivered, failed, expired, pending) per row."""
    return [(r.key, r.messages, r.parts, r.delivered, r.failed, r.expired, r.pending) for r in rows]


ALL = ("TOTAL", 9, 13, 3, 2, 1, 3)


def test_by_account(engine: Engine) -> None:
    rows = usage_report(engine, "account")
    assert table(rows) == [(A, 5, 8, 2, 2, 1, 0), (B, 4, 5, 1, 0, 0, 3)]
    assert table([total(rows)]) == [ALL]


def test_by_product_reports_a_missing_product_as_none(engine: Engine) -> None:
    rows = usage_report(engine, "product")
    assert table(rows) == [
        ("(none)", 2, 4, 0, 1, 1, 0),  # NULL and "" are one key
        ("=cmd()", 1, 1, 0, 1, 0, 0),
        ("alerts", 3, 4, 2, 0, 0, 1),
        ("billing", 3, 4, 1, 0, 0, 2),
    ]
    assert table([total(rows)]) == [ALL]


def test_by_day_uses_utc_days_of_intake(engine: Engine) -> None:
    rows = usage_report(engine, "day")
    assert table(rows) == [
        ("2024-03-01", 3, 4, 2, 1, 0, 0),
        ("2024-03-02", 3, 5, 0, 0, 1, 2),
        ("2024-03-03", 3, 4, 1, 1, 0, 1),
    ]
    assert table([total(rows)]) == [ALL]


def test_by_status(engine: Engine) -> None:
    rows = usage_report(engine, "status")
    assert table(rows) == [
        ("delivered", 3, 4, 3, 0, 0, 0),
        ("expired", 1, 3, 0, 0, 1, 0),
        ("failed", 2, 2, 0, 2, 0, 0),
        ("queued", 1, 1, 0, 0, 0, 1),
        ("submitted", 1, 2, 0, 0, 0, 1),
        ("submitting", 1, 1, 0, 0, 0, 1),
    ]
    assert table([total(rows)]) == [ALL]


def test_by_country(engine: Engine) -> None:
    rows = usage_report(engine, "country")
    assert table(rows) == [
        ("AU", 6, 9, 3, 1, 1, 1),
        ("GB", 1, 1, 0, 0, 0, 1),
        ("NZ", 2, 3, 0, 1, 0, 1),
    ]
    assert table([total(rows)]) == [ALL]


def test_every_dimension_has_a_test() -> None:
    tested = {"account", "product", "day", "status", "country"}
    assert set(DIMENSIONS) == tested


def test_range_bounds_are_exact_to_the_millisecond(engine: Engine) -> None:
    def count(since: int | None, until: int | None) -> int:
        return total(usage_report(engine, "account", since, until)).messages

    assert count(DAY1, None) == 6  # message 3, one ms before, is out; 4, at since, is in
    assert count(None, DAY1) == 3  # until is exclusive: 4, at until, is out
    assert count(DAY0 + 1, None) == 8  # one ms after the first message
    assert count(DAY2 + 9 * HOUR, DAY2 + 9 * HOUR + 1) == 1  # only message 8
    assert count(DAY1 + 12 * HOUR, DAY1 + 12 * HOUR + 1) == 2  # 5 and 6 share the ms
    assert count(DAY2 + 10 * HOUR, None) == 0
    assert usage_report(engine, "status", DAY2 + 10 * HOUR) == []
    # A bare date as --to includes that whole UTC day.
    rows = usage_report(engine, "day", None, parse_time_bound("2024-03-01", end=True))
    assert table(rows) == [("2024-03-01", 3, 4, 2, 1, 0, 0)]
    rows = usage_report(
        engine, "day", parse_time_bound("2024-03-02"), parse_time_bound("2024-03-02", end=True)
    )
    assert table(rows) == [("2024-03-02", 3, 5, 0, 0, 1, 2)]


def test_ids_made_after_their_created_at_still_count(store_factory: Any) -> None:
    # Intake takes one timestamp per request and makes the ids after it, so an
    # id's time may be later than created_at: the id bound must not cut it.
    engine: Engine = store_factory("usage_slack")
    at = ms("2024-05-01T12:00:00")
    row = {
        "request_id": "r", "account_id": A, "user_id": 1, "dest_tn": "+61407555001",
        "dest_country": "AU", "text": "hi", "encoding": "gsm", "parts": 1, "due_at": at,
        "receipt_flag": 0, "reply_type": "N", "status": "queued", "created_at": at,
        "updated_at": at,
    }  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(messages), {**row, "id": id_at(at + 5_000)})
    assert total(usage_report(engine, "account", at, at + 1)).messages == 1
    assert total(usage_report(engine, "account", at + 1, None)).messages == 0


def test_account_filter(engine: Engine) -> None:
    rows = usage_report(engine, "status", account_id=B)
    assert table(rows) == [
        ("delivered", 1, 1, 1, 0, 0, 0),
        ("queued", 1, 1, 0, 0, 0, 1),
        ("submitted", 1, 2, 0, 0, 0, 1),
        ("submitting", 1, 1, 0, 0, 0, 1),
    ]
    rows = usage_report(engine, "product", DAY1, DAY2, account_id=A)
    assert table(rows) == [("(none)", 1, 3, 0, 0, 1, 0)]
    assert usage_report(engine, "account", account_id="CI99999999") == []


def test_sqlite_bounds_the_range_on_the_primary_key(engine_factory: Any) -> None:
    # The point of UUIDv7 ids: a time range is a slice of the primary key, so
    # the report neither scans the table nor needs an index on created_at.
    _, engine = engine_factory("usage_plan")
    from sqlalchemy.dialects import sqlite

    from roxgate.store import usage

    query = usage._query("account", DAY0, DAY1, None)
    compiled = query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    assert "SEARCH messages USING INDEX sqlite_autoindex_messages_1 (id>? AND id<?)" in plan, plan


def test_id_floor_sorts_before_every_id_of_its_millisecond() -> None:
    at = ms("2024-03-01T10:00:00")
    for _ in range(50):
        assert id_floor(at) <= id_at(at) < id_floor(at + 1)
    assert id_at(at - 1) < id_floor(at)


def test_csv_has_a_header_and_one_line_per_key(engine: Engine) -> None:
    rows = usage_report(engine, "product")
    lines = list(csv.reader(io.StringIO(to_csv(rows, "product"))))
    assert lines == [
        ["product", "messages", "parts", "delivered", "failed", "expired", "pending"],
        ["(none)", "2", "4", "0", "1", "1", "0"],
        ["'=cmd()", "1", "1", "0", "1", "0", "0"],  # no formula for a spreadsheet to run
        ["alerts", "3", "4", "2", "0", "0", "1"],
        ["billing", "3", "4", "1", "0", "0", "2"],
    ]
    assert to_csv([], "day") == "day,messages,parts,delivered,failed,expired,pending\r\n"


def test_json_has_rows_and_a_total(engine: Engine) -> None:
    doc = orjson.loads(to_json(usage_report(engine, "country", account_id=B), "country"))
    assert doc == {
        "by": "country",
        "rows": [
            {"country": "AU", "messages": 2, "parts": 2, "delivered": 1, "failed": 0,
             "expired": 0, "pending": 1},
            {"country": "GB", "messages": 1, "parts": 1, "delivered": 0, "failed": 0,
             "expired": 0, "pending": 1},
            {"country": "NZ", "messages": 1, "parts": 2, "delivered": 0, "failed": 0,
             "expired": 0, "pending": 1},
        ],
        "total": {"messages": 4, "parts": 5, "delivered": 1, "failed": 0, "expired": 0,
                  "pending": 3},
    }  # fmt: skip
    empty = orjson.loads(to_json([], "day"))
    assert empty["rows"] == [] and empty["total"]["messages"] == 0


def test_unknown_dimension_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="unknown report dimension"):
        usage_report(engine, "user")  # type: ignore[arg-type]


def test_parse_time_bound() -> None:
    assert parse_time_bound("2024-03-01") == DAY0
    assert parse_time_bound("2024-03-01", end=True) == DAY1  # the whole day, exclusive end
    assert parse_time_bound("2024-03-01T10:00") == DAY0 + 10 * HOUR  # naive is UTC
    assert parse_time_bound("2024-03-01T10:00", end=True) == DAY0 + 10 * HOUR
    assert parse_time_bound("2024-03-01T10:00:00+10:00") == DAY0
    assert parse_time_bound(" 2024-03-01T00:00:00.001Z ") == DAY0 + 1
    for bad in ("yesterday", "2024-13-01", "", "2024-03-01T25:00"):
        with pytest.raises(ValueError, match="not a date"):
            parse_time_bound(bad)

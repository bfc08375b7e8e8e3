"""Housekeeping deletes expired idempotency keys, old traffic counts and sessions only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select

from roxgate.store import housekeeping
from roxgate.store.schema import console_sessions, idempotency_keys, traffic

HOUR = 3_600_000
NOW = 1_790_000_000_000


def count(engine: Any, table: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_tidy_deletes_only_what_has_expired(store_factory: Any) -> None:
    engine = store_factory("housekeeping")
    with engine.begin() as conn:
        conn.execute(
            insert(idempotency_keys),
            [
                {"account_id": "CI00000001", "key": k, "request_hash": b"h" * 32,
                 "response": b"{}", "created_at": NOW - age}
                for k, age in (("old", 25 * HOUR), ("new", 23 * HOUR))
            ],
        )  # fmt: skip
        conn.execute(
            insert(traffic),
            [
                {"minute": (NOW - age) // 60_000, "kind": "accepted", "owner": "p:1", "count": 1}
                for age in (9 * 24 * HOUR, 7 * 24 * HOUR)
            ],
        )
        conn.execute(
            insert(console_sessions),
            [
                {"id": name, "operator_id": 1, "csrf_token": "t", "client_ip": None,
                 "created_at": NOW - HOUR, "last_seen_at": NOW - HOUR, "expires_at": expires}
                for name, expires in (("gone", NOW - 1), ("live", NOW + HOUR))
            ],
        )  # fmt: skip
    with engine.begin() as conn:
        deleted = housekeeping.tidy(conn, NOW, idempotency_hours=24)
    assert deleted == {"idempotency_keys": 1, "traffic": 1, "console_sessions": 1}
    with engine.connect() as conn:
        assert list(conn.execute(select(idempotency_keys.c.key)).scalars()) == ["new"]
        assert list(conn.execute(select(console_sessions.c.id)).scalars()) == ["live"]
    assert count(engine, traffic) == 1

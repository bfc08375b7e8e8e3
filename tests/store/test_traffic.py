"""Per-minute traffic counts: upserted in the caller's transaction, summed over processes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from roxgate.store import traffic
from roxgate.store.schema import traffic as traffic_table

MINUTE = 60_000
T0 = 1_790_000_000_000 // MINUTE * MINUTE  # the start of a minute


def test_counts_add_up_per_minute_and_across_processes(store_factory: Any) -> None:
    engine = store_factory("traffic")
    with engine.begin() as conn:
        traffic.count(conn, {"accepted": 3, "failed": 0}, T0 + 5)
        traffic.count(conn, {"accepted": 2, "submitted": 4}, T0 + 59_999)
        traffic.count(conn, {"delivered": 1}, T0 + MINUTE)
        # Another process's rows for the same minute.
        conn.execute(
            insert(traffic_table),
            {"minute": T0 // MINUTE, "kind": "accepted", "owner": "other:1", "count": 10},
        )
    with engine.connect() as conn:
        got = traffic.per_minute(conn, T0, T0 + MINUTE)
        assert got == {
            "accepted": {T0 // MINUTE: 15},
            "submitted": {T0 // MINUTE: 4},
            "delivered": {T0 // MINUTE + 1: 1},
        }
        assert traffic.per_minute(conn, T0 + MINUTE, T0 + 2 * MINUTE) == {
            "delivered": {T0 // MINUTE + 1: 1}
        }
    with engine.begin() as conn:
        assert traffic.prune(conn, T0 + MINUTE) == 3
    with engine.connect() as conn:
        assert traffic.per_minute(conn, 0, T0 + 10 * MINUTE) == {"delivered": {T0 // MINUTE + 1: 1}}


def test_a_rolled_back_transaction_counts_nothing_in_the_table(store_factory: Any) -> None:
    engine = store_factory("traffic_rollback")
    conn = engine.connect()
    trans = conn.begin()
    traffic.count(conn, {"accepted": 7}, T0)
    trans.rollback()
    conn.close()
    with engine.connect() as conn:
        assert traffic.per_minute(conn, 0, T0 + MINUTE) == {}

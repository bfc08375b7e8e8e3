"""The registry of sending processes, on each database the store supports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from roxgate.carriers.connector import SmppCarrier
from roxgate.carriers.smpp.url import parse_carrier_url
from roxgate.store import workers
from roxgate.store.ids import now_ms
from roxgate.store.schema import workers as workers_table


def test_heartbeats_count_the_live_and_forget_the_dead(store_factory: Any) -> None:
    engine = store_factory("workers")
    with engine.begin() as conn:
        workers.register(conn, "a", "worker")
        assert workers.heartbeat(conn, "b", "all") == 2  # registers itself on its first beat
        assert workers.heartbeat(conn, "a", "worker") == 2
        # "b" stops beating (killed): after STALE_MS it no longer counts.
        conn.execute(
            update(workers_table)
            .where(workers_table.c.id == "b")
            .values(heartbeat_at=now_ms() - workers.STALE_MS - 1)
        )
        assert workers.heartbeat(conn, "a", "worker") == 1
        assert [w["id"] for w in workers.live_workers(conn)] == ["a"]
        # Long dead rows are purged by anyone's heartbeat.
        conn.execute(
            update(workers_table)
            .where(workers_table.c.id == "b")
            .values(heartbeat_at=now_ms() - 11 * workers.STALE_MS)
        )
        workers.heartbeat(conn, "a", "worker")
        assert conn.execute(workers_table.select()).all()[0].id == "a"
        workers.deregister(conn, "a")
        assert workers.live_workers(conn) == []
        assert workers.heartbeat(conn, "c", "worker") == 1  # never below one: itself


def test_tps_is_shared_among_workers() -> None:
    async def record(*_args: Any) -> None:
        return None

    limited = SmppCarrier(parse_carrier_url("smpp://u:p@127.0.0.1:1?tps=100"), record)
    assert limited.share_tps(1) == 100
    assert limited.share_tps(4) == 25
    assert limited.share_tps(0) == 100  # nonsense count: the whole limit, never more
    free = SmppCarrier(parse_carrier_url("smpp://u:p@127.0.0.1:1"), record)
    assert free.share_tps(3) == 0  # no limit to share

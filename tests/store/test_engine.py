"""The PostgreSQL connection pool: idle connections checked before use, busy ones not."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, text

from roxgate.store.engine import PING_IF_IDLE_SECONDS


def count_pings(engine: Engine) -> list[bool]:
    """Record each ping of the dialect (still made: a spy, not a stand-in)."""
    pings: list[bool] = []
    real_ping = engine.dialect.do_ping

    def ping(dbapi_conn: Any) -> bool:
        try:
            alive = real_ping(dbapi_conn)
        except Exception:
            pings.append(False)
            raise
        pings.append(alive)
        return alive

    engine.dialect.do_ping = ping  # type: ignore[method-assign]
    return pings


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    pg_engine_factory: Any,
) -> None:
    _url, engine = pg_engine_factory("idle_ping")
    pings = count_pings(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    # The server closes the pooled connection while it idles (a restart, a proxy).
    with engine.connect() as conn, engine.connect() as other:
        victim = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        conn.commit()
        conn.close()  # back in the pool, idle
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
        other.commit()
    time.sleep(PING_IF_IDLE_SECONDS + 0.2)
    # Both pooled connections handed out again: one of them is the closed one.
    with engine.connect() as conn, engine.connect() as other:
        assert conn.execute(text("SELECT 2")).scalar_one() == 2
        assert other.execute(text("SELECT 3")).scalar_one() == 3
    assert False in pings  # found dead by the ping, and replaced: no error reached us


def test_a_connection_back_a_moment_ago_is_not_pinged(pg_engine_factory: Any) -> None:
    _url, engine = pg_engine_factory("busy_no_ping")
    pings = count_pings(engine)
    for n in range(5):
        with engine.connect() as conn:
            assert conn.execute(text("SELECT :n"), {"n": n}).scalar_one() == n
    assert pings == []
    time.sleep(PING_IF_IDLE_SECONDS + 0.2)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert pings == [True]

"""NOTIFY / LISTEN between processes on PostgreSQL: a real server, a real listener thread."""

from __future__ import annotations

import threading
from typing import Any

from roxgate.store.notify import QUEUED, PgListener, libpq_url, notify


def test_listener_hears_notifications_and_reconnects(pg_engine_factory: Any) -> None:
    _, engine = pg_engine_factory("notify")
    heard: list[str] = []
    got = threading.Event()

    def on_notify(channel: str) -> None:
        heard.append(channel)
        got.set()

    listener = PgListener(libpq_url(engine), [QUEUED], on_notify)
    listener.start()
    try:
        # On (re)connecting it wakes its owner once: work may have come meanwhile.
        assert got.wait(5) and heard == [QUEUED]
        got.clear()
        with engine.begin() as conn:
            notify(conn, QUEUED)
        assert got.wait(5)
        assert heard == [QUEUED, QUEUED]
        # The server drops the listening connection: it comes back by itself.
        got.clear()
        with engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND starts_with(query, 'LISTEN')"
            )
            conn.commit()
        assert got.wait(10), "no wake-up after the reconnect"
        got.clear()
        with engine.begin() as conn:
            notify(conn, QUEUED)
        assert got.wait(5)
    finally:
        listener.stop()


def test_libpq_url_keeps_the_password_and_drops_the_driver(pg_engine_factory: Any) -> None:
    from sqlalchemy import create_engine

    engine = create_engine("postgresql+psycopg://u:p%40ss@db.example:5433/roxgate")
    assert libpq_url(engine) == "postgresql://u:p%40ss@db.example:5433/roxgate"


def test_a_commit_that_stored_messages_wakes_the_listeners(pg_engine_factory: Any) -> None:
    """The writer's NOTIFY travels with its commit: heard for stored messages,
    not for a request refused (nothing committed)."""
    from roxgate.accounts import admin
    from roxgate.store.writer import GroupCommitWriter, Outcome
    from tests.store.test_writer import intake, submit_all

    _, engine = pg_engine_factory("notify_writer")
    admin.add_account(engine, "CI00000001", "A", credits=1)
    got = threading.Event()
    listener = PgListener(libpq_url(engine), [QUEUED], lambda _channel: got.set())
    writer = GroupCommitWriter(engine)
    listener.start()
    writer.start()
    try:
        assert got.wait(5)  # the wake-up on connecting
        got.clear()
        assert submit_all([(writer, intake(1))]) == [Outcome.STORED]
        assert got.wait(5), "no NOTIFY for stored messages"
        got.clear()
        assert submit_all([(writer, intake(1))]) == [Outcome.NO_CREDIT]
        assert not got.wait(1.0), "NOTIFY for a request that stored nothing"
    finally:
        writer.stop()
        listener.stop()

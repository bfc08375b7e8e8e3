"""Wake-ups between processes on PostgreSQL: ``NOTIFY`` when work was committed,
``LISTEN`` in every process that does that work.

Polling stays the safety net (a notification is lost while a listener
reconnects); the notification only makes a worker look at once instead of at
its next poll. In one process (SQLite, role all) none of this is needed: the
writer wakes the dispatcher directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

QUEUED = "roxgate_queued"  # messages were queued: dispatchers look now


def libpq_url(engine: Engine) -> str:
    """The engine's URL as libpq reads it (no SQLAlchemy driver suffix), password kept."""
    url = make_url(engine.url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def notify(conn: Connection, channel: str) -> None:
    """``NOTIFY channel`` in ``conn``'s transaction: sent when it commits, never if
    it rolls back, and once however many times a transaction asks. The work and
    its wake-up travel together, with no connection or round trip of their own
    (a separate ``NOTIFY`` after each group commit cost an intake writer a
    fifth of its time)."""
    conn.exec_driver_sql(f"NOTIFY {channel}")


class PgListener:
    """A thread that ``LISTEN``s on channels and calls ``on_notify(channel)`` for each.

    ``on_notify`` runs in the listener thread: hand it to the event loop with
    ``loop.call_soon_threadsafe``. The connection is re-opened after any
    error, with a growing pause (up to 10 s).
    """

    def __init__(self, dsn: str, channels: list[str], on_notify: Callable[[str], None]) -> None:
        self._dsn = dsn
        self._channels = channels
        self._on_notify = on_notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roxgate-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    for channel in self._channels:
                        conn.execute(f"LISTEN {channel}")
                    pause = 0.5
                    # The first wake-up after (re)connecting: anything may have
                    # been committed while we were not listening.
                    for channel in self._channels:
                        self._on_notify(channel)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0, stop_after=256):
                            self._on_notify(note.channel)
            except Exception as exc:  # connection lost, server restarting
                if self._stop.is_set():
                    return
                log.warning("LISTEN connection lost (%s); again in %.1f s", exc, pause)
                self._stop.wait(pause)
                pause = min(10.0, pause * 2)

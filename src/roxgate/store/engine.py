"""Opening the database and bringing its schema up to date."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DisconnectionError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Key of the PostgreSQL advisory lock migrations run under (any constant bigint
# works; this one is "roxgate" in ASCII): processes starting at once on one
# database take turns, and the later ones find the schema already at head.
MIGRATION_LOCK_KEY = 0x726F7867617465


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, busy_timeout: float) -> None:
    # We manage transactions ourselves (BEGIN IMMEDIATE below), so the driver
    # must not open them implicitly behind our back.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers run while the writer commits; synchronous=FULL fsyncs
    # the WAL on every commit so "0000" survives power loss, not only a crash.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # A transaction that reads and then writes must take the write lock up
    # front: in WAL mode upgrading a read fails with SQLITE_BUSY at once,
    # without waiting. Such callers ask with ``immediate(engine)``; plain reads
    # stay deferred so they never queue behind the writer.
    if conn.get_execution_options().get("sqlite_begin") == "immediate":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def immediate(engine: Engine) -> Engine:
    """The same engine, whose transactions take the SQLite write lock at BEGIN."""
    return engine.execution_options(sqlite_begin="immediate")


def normalise_url(url: str) -> str:
    """Accept the plain driver-less URLs operators write (postgresql://)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, busy_timeout: float = 10.0) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", lambda conn, _record: _sqlite_pragmas(conn, busy_timeout))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(
        url,
        connect_args=_pg_connect_args(url, busy_timeout),
        pool_size=8,
        max_overflow=8,
        # A dead server connection (a restart, a failover, an idle timeout in
        # a proxy) is found before use and replaced, not handed to a query:
        # by a ping when it has been idle a while (_ping_when_idle), not at
        # every checkout as pool_pre_ping would (a round trip per read).
        pool_pre_ping=False,
        pool_recycle=1800,
        # Reuse the most recent connection: the surplus idles and can be
        # closed by the server or a pooler without the pool noticing late.
        pool_use_lifo=True,
        pool_timeout=30,
    )
    _ping_when_idle(engine)
    return engine


# A connection back in the pool for less than this was working a moment ago: it
# is handed out without a ping. Under load every checkout is of such a one.
PING_IF_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    def checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["roxgate_idle_since"] = time.monotonic()

    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("roxgate_idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < PING_IF_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool closes this one and hands out another (or connects anew).
            raise DisconnectionError(f"idle connection found dead: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection found dead")

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checkout)


def _pg_connect_args(url: str, busy_timeout: float) -> dict[str, Any]:
    """Connection settings (psycopg's) the operator's URL does not set already."""
    parsed = make_url(url)
    args: dict[str, Any] = {}
    if parsed.get_backend_name() != "postgresql":
        return args
    given = parsed.query
    if "connect_timeout" not in given:
        args["connect_timeout"] = max(2, int(busy_timeout))
    if "application_name" not in given:
        args["application_name"] = "roxgate"
    if "options" not in given:
        # psycopg prepares a statement run five times, and PostgreSQL may then
        # settle on one generic plan for it, costed on the table as it was:
        # a look-up by carrier id planned while message_parts was nearly
        # empty stayed a sequential scan (70 ms a batch at 20,000 parts). A
        # plan made for each execution's values costs little for our
        # statements (their id lists are one array parameter) and never goes
        # stale; the parse is still saved.
        args["options"] = "-c plan_cache_mode=force_custom_plan"
    return args


def migrate(engine: Engine) -> None:
    """Apply every pending Alembic migration (run at each start)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several processes may start at once (api and worker roles): they
            # would all create the same tables. Held until this transaction
            # ends; SQLite needs none (the DDL takes its one write lock).
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_database(url: str, busy_timeout: float = 10.0) -> Engine:
    engine = make_engine(url, busy_timeout)
    migrate(engine)
    return engine

"""The Alembic migrations build exactly the schema the code queries against,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from roxgate.store.engine import MIGRATIONS_DIR, make_engine, migrate, open_database
from roxgate.store.schema import metadata

HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, of each kind the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("pg_database_factory")("empty")  # type: ignore[no-any-return]


def alembic_config(conn: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, metadata)


def test_migrations_match_schema(store_factory: Callable[[str], Engine]) -> None:
    engine = store_factory("migrations")
    assert schema_diff(engine) == []


def test_migrate_twice_is_a_no_op(store_factory: Callable[[str], Engine]) -> None:
    engine = store_factory("migrations2")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD


def test_sqlite_is_durable(engine_factory: Any) -> None:
    _, engine = engine_factory("migrations3")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL


def test_upgrade_from_0001_keeps_queued_messages(empty_url: str) -> None:
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        conn.execute(
            text(
                "INSERT INTO messages (id, request_id, account_id, user_id, dest_tn, dest_country,"
                " text, encoding, parts, due_at, receipt_flag, reply_type, status, created_at,"
                " updated_at) VALUES ('m1', 'r1', 'CI00000001', 1, '+61407555001', 'AU', 'hi',"
                " 'gsm', 1, 0, 0, 'E', 'queued', 0, 0)"
            )
        )
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, attempts, text FROM messages")).one()
    assert tuple(row) == ("queued", 0, "hi")
    assert schema_diff(engine) == []
    engine.dispose()


def test_downgrade_to_nothing_and_up_again(empty_url: str) -> None:
    engine = make_engine(empty_url)
    migrate(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    assert schema_diff(engine) == []
    engine.dispose()


def test_postgresql_column_types(pg_engine_factory: Any) -> None:
    """What the schema's generic types became on PostgreSQL."""
    _, engine = pg_engine_factory("types")
    with engine.connect() as conn:
        columns = {
            (r.table_name, r.column_name): (r.data_type, r.column_default)
            for r in conn.execute(
                text(
                    "SELECT table_name, column_name, data_type, column_default "
                    "FROM information_schema.columns WHERE table_schema = 'public'"
                )
            )
        }
    assert columns["accounts", "api_enabled"] == ("boolean", None)
    assert columns["accounts", "credits"] == ("bigint", None)
    assert columns["messages", "due_at"] == ("bigint", None)
    assert columns["messages", "attempts"] == ("integer", "0")
    assert columns["messages", "id"] == ("character varying", None)
    assert columns["callbacks", "body"] == ("bytea", None)
    assert columns["idempotency_keys", "request_hash"] == ("bytea", None)
    assert columns["inbound_parts", "data"] == ("bytea", None)
    for table in ("message_events", "callback_attempts", "unmatched_receipts"):
        data_type, default = columns[table, "id"]
        assert data_type == "bigint" and default.startswith("nextval("), table
    with engine.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT data_type FROM pg_sequences "
                    "WHERE sequencename = 'message_events_id_seq'"
                )
            ).scalar_one()
            == "bigint"
        )


def test_processes_starting_at_once_on_postgresql_all_migrate(pg_database_factory: Any) -> None:
    """api and worker processes started together on an empty database: the
    advisory lock makes them take turns, and every one of them comes up."""
    url = pg_database_factory("concurrent_migrate")
    start_at = time.time() + 3  # every process has imported roxgate by then
    code = textwrap.dedent(
        """
        import sys, time
        from roxgate.store.engine import open_database
        url, start_at = sys.argv[1], float(sys.argv[2])
        time.sleep(max(0.0, start_at - time.time()))
        open_database(url).dispose()
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, "\n".join(outputs)
    engine = open_database(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [
            HEAD
        ]
    assert schema_diff(engine) == []
    engine.dispose()

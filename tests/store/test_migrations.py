"""The Alembic migrations build exactly the schema the code queries against."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from roxgate.store.engine import MIGRATIONS_DIR, migrate
from roxgate.store.schema import metadata


def test_migrations_match_schema(engine_factory: Any) -> None:
    _, engine = engine_factory("migrations")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrate_twice_is_a_no_op_and_sqlite_is_durable(engine_factory: Any) -> None:
    _, engine = engine_factory("migrations2")
    migrate(engine)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL


def test_upgrade_from_0001_keeps_queued_messages(tmp_path: Any) -> None:
    from alembic import command
    from alembic.config import Config

    from roxgate.store.engine import MIGRATIONS_DIR, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
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

"""The Alembic migrations build exactly the schema the code queries against."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from roxgate.store.engine import migrate
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
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0001"
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL

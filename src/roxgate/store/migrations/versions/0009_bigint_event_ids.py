"""64-bit ids for the tables that grow with traffic.

``message_events``, ``callback_attempts`` and ``unmatched_receipts`` took
SERIAL (32-bit) ids on PostgreSQL: at a few events per message, a gateway
sending a million messages a day would run out in about two years. SQLite's
INTEGER PRIMARY KEY is already 64-bit, so this changes nothing there.

On PostgreSQL, ALTER COLUMN … TYPE bigint rewrites the table under an
exclusive lock: quick on the tables of a young installation, minutes on one
with hundreds of millions of rows (then run it in a maintenance window).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("message_events", "callback_attempts", "unmatched_receipts")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE bigint")
        # A SERIAL's sequence is "AS integer" too, and would stop at 2^31 - 1.
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER SEQUENCE {table}_id_seq AS integer")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE integer")

"""Sending: leases and outcome on messages; message parts, events, inbound.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_owner", sa.String(64)))
        batch.add_column(sa.Column("lease_until", sa.BigInteger))
        batch.add_column(sa.Column("submitted_at", sa.BigInteger))
        batch.add_column(sa.Column("final_at", sa.BigInteger))
        batch.add_column(sa.Column("result", sa.String(4)))
        batch.add_column(sa.Column("result_text", sa.Text))
    op.create_table(
        "message_parts",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("part_no", sa.Integer, primary_key=True),
        sa.Column("carrier_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("carrier_state", sa.String(8)),
        sa.Column("carrier_error", sa.String(16)),
        sa.Column("submitted_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_message_parts_carrier", "message_parts", ["carrier_id"])
    op.create_table(
        "message_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_message_events_message", "message_events", ["message_id"])
    op.create_table(
        "inbound",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
        sa.Column("matched_message_id", sa.String(36)),
    )


def downgrade() -> None:
    for table in ("inbound", "message_events", "message_parts"):
        op.drop_table(table)
    with op.batch_alter_table("messages") as batch:
        for column in (
            "result_text",
            "result",
            "final_at",
            "submitted_at",
            "lease_until",
            "lease_owner",
            "attempts",
        ):
            batch.drop_column(column)

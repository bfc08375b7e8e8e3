"""Reporting back: callbacks and mail outboxes, attempts, reply matching.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callbacks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("inbound_id", sa.String(36)),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_callbacks_status_next", "callbacks", ["status", "next_at"])
    op.create_index("ix_callbacks_message", "callbacks", ["message_id"])
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("callback_id", sa.String(36), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_callback_attempts_callback", "callback_attempts", ["callback_id"])
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("inbound_id", sa.String(36)),
        sa.Column("to_addr", sa.String(254), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("sent_at", sa.BigInteger),
    )
    op.create_index("ix_mail_outbox_status_next", "mail_outbox", ["status", "next_at"])
    op.create_index("ix_mail_outbox_message", "mail_outbox", ["message_id"])
    op.create_table(
        "recent_sends",
        sa.Column("dest_tn", sa.String(20), primary_key=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("submitted_at", sa.BigInteger, nullable=False),
    )
    with op.batch_alter_table("inbound") as batch:
        batch.add_column(sa.Column("account_id", sa.String(10)))
        batch.add_column(sa.Column("action", sa.String(32)))
    op.create_index("ix_inbound_received", "inbound", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_received", "inbound")
    with op.batch_alter_table("inbound") as batch:
        batch.drop_column("action")
        batch.drop_column("account_id")
    for table in ("recent_sends", "mail_outbox", "callback_attempts", "callbacks"):
        op.drop_table(table)

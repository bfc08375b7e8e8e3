"""Accounts, users, requests, messages, idempotency keys and number lists.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("tz_offset", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("api_enabled", sa.Boolean, nullable=False),
        sa.Column("sender_id", sa.String(16)),
        sa.Column("allowed_nets", sa.Text),
        sa.Column("allowed_countries", sa.Text),
        sa.Column("credits", sa.BigInteger),
        sa.Column("callback_secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(10), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("mobile", sa.String(20)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.BigInteger),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("account_id", "email", name="uq_users_account_email"),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(10), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("product", sa.String(100)),
        sa.Column("client_ip", sa.String(45)),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("recipients", sa.Integer, nullable=False),
        sa.Column("queued", sa.Integer, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_requests_account_received", "requests", ["account_id", "received_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(10), nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("product", sa.String(100)),
        sa.Column("dest_tn", sa.String(20), nullable=False),
        sa.Column("dest_country", sa.String(3), nullable=False),
        sa.Column("dest_name", sa.String(255)),
        sa.Column("dest_email", sa.String(255)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("encoding", sa.String(8), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("receipt_flag", sa.Integer, nullable=False),
        sa.Column("receipt_url", sa.Text),
        sa.Column("reply_type", sa.String(1), nullable=False),
        sa.Column("reply_url", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_messages_status_due", "messages", ["status", "due_at"])
    op.create_index("ix_messages_request", "messages", ["request_id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(10), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_idempotency_created", "idempotency_keys", ["created_at"])
    op.create_table(
        "number_lists",
        sa.Column("account_id", sa.String(10), primary_key=True),
        sa.Column("number", sa.String(20), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("number_lists", "idempotency_keys", "messages", "requests", "users", "accounts"):
        op.drop_table(table)

"""Parts of long inbound SMS, kept until the whole message is there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_parts",
        sa.Column("source", sa.String(32), primary_key=True),
        sa.Column("destination", sa.String(32), primary_key=True),
        sa.Column("ref", sa.Integer, primary_key=True),
        sa.Column("total", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("coding", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_inbound_parts_received", "inbound_parts", ["received_at"])


def downgrade() -> None:
    op.drop_table("inbound_parts")

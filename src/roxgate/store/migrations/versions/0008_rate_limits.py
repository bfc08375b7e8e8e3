"""Per-account rate limits: requests and messages per minute.

NULL (every existing account) means the gateway's defaults
(``ROXGATE_RATE_REQUESTS_PER_MINUTE`` / ``ROXGATE_RATE_MESSAGES_PER_MINUTE``);
0 means unlimited for that account.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("rate_requests_per_minute", sa.Integer))
        batch.add_column(sa.Column("rate_messages_per_minute", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("rate_messages_per_minute")
        batch.drop_column("rate_requests_per_minute")

"""Commit order: `commit_seq`, the first half of the cursor every list and the live feed use.

Rows written before this revision get 0 and keep their id order; every later batch gets a
larger value (Postgres: its transaction id; SQLite: a counter taken in the write transaction).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("commit_seq", sa.BigInteger, nullable=False, server_default="0")
    )
    op.create_index("ix_events_commit_order", "events", ["commit_seq", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_commit_order", table_name="events")
    op.drop_column("events", "commit_seq")

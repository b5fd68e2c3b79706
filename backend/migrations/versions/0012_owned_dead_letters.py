"""Dead-letter queues eventscope owns: each row taken from one names it (`captured_from`).

A nullable column, so adding it rewrites nothing (SQLite: ALTER TABLE ADD COLUMN; Postgres: a
catalog change). The tap's rows leave it null.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("captured_from", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("captured_from")

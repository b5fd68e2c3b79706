"""Batches committed but not known to be acked: how a tap redelivery is told from a new publish.

A delivery flagged `redelivered` used to be skipped whenever its fingerprint was stored, which
dropped a genuine second publish of the same bytes that a recorder had taken but not committed
when it died. Each batch now lists, in its own transaction, the fingerprints of the deliveries
it took; only a redelivery matching such a list of a recorder that is gone is skipped.

Redeliveries of rows stored before this revision are not listed: if a recorder died between a
commit and its ack just before the upgrade, those come back as second observations.

Revision ID: 0005
Revises: 0004
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
        "pending_acks",
        sa.Column("batch", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("holder", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprints", sa.LargeBinary, nullable=False),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("duplicates", sa.Integer, nullable=False),
    )
    op.create_index("ix_pending_acks_holder", "pending_acks", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_pending_acks_holder", table_name="pending_acks")
    op.drop_table("pending_acks")

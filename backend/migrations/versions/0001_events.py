"""The events table: one row per observed publish.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.LargeBinary(16), nullable=False),
        sa.Column("observation", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exchange", sa.Text, nullable=False),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("redelivered", sa.Boolean, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("event_type", sa.Text),
        sa.Column("correlation_id", sa.Text),
        sa.Column("causation_id", sa.Text),
        sa.Column("aggregate_type", sa.Text),
        sa.Column("aggregate_id", sa.Text),
        sa.Column("aggregate_version", sa.BigInteger),
        sa.Column("occurred_at", sa.DateTime(timezone=True)),
        sa.Column("message_id", sa.Text),
        sa.Column("content_type", sa.Text),
        sa.Column("dead_letter", sa.String(16)),
        sa.Column("body_kind", sa.String(8), nullable=False),
        sa.Column("body_size", sa.BigInteger, nullable=False),
        sa.Column("body_truncated", sa.Boolean, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("properties", sa.Text, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("originals", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_events_fingerprint", "events", ["fingerprint", "observation"], unique=True)
    op.create_index("ix_events_correlation", "events", ["correlation_id", "id"])
    op.create_index(
        "ix_events_aggregate", "events", ["aggregate_type", "aggregate_id", "aggregate_version"]
    )
    op.create_index("ix_events_routing_key", "events", ["routing_key", "id"])
    op.create_index("ix_events_event_type", "events", ["event_type", "id"])
    op.create_index("ix_events_message_id", "events", ["message_id"])
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_events_dead_letter", "events", ["dead_letter", "id"])


def downgrade() -> None:
    op.drop_table("events")

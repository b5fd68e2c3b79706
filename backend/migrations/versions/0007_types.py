"""Event types: the catalog of every event type seen, kept behind ingest.

- `event_types`: one row per type (per routing key for events without a type): counts, first
  and last seen, a sample, the merged shape, routing keys, recent shape changes.
- `type_shape_changes`: every flagged shape change with the first event that showed it.
- `type_rate_buckets`: events per type per minute, for the recent rate chart (pruned).
- `type_catalog_progress`: the commit-order cursor up to which events are counted. It starts
  at the beginning: the catalog then counts the events already stored, behind ingest.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_types",
        sa.Column("type_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_event_id", sa.BigInteger, nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("sample_event_id", sa.BigInteger),
        sa.Column("sample", sa.Text),
        sa.Column("shape", sa.Text, nullable=False),
        sa.Column("routing_keys", sa.Text, nullable=False),
        sa.Column("other_routing_keys", sa.BigInteger, nullable=False),
        sa.Column("changes", sa.BigInteger, nullable=False),
        sa.Column("last_change_at", sa.DateTime(timezone=True)),
        sa.Column("recent_changes", sa.Text, nullable=False),
    )
    op.create_index("ix_event_types_last_seen", "event_types", ["last_seen"])
    op.create_table(
        "type_shape_changes",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("type_key", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_type_shape_changes_type", "type_shape_changes", ["type_key", "id"])
    op.create_table(
        "type_rate_buckets",
        sa.Column("type_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("events", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_type_rate_buckets_minute", "type_rate_buckets", ["minute"])
    op.create_table(
        "type_catalog_progress",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commit_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO type_catalog_progress (id, commit_seq, event_id) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table("type_catalog_progress")
    op.drop_table("type_rate_buckets")
    op.drop_table("type_shape_changes")
    op.drop_table("event_types")

"""Aggregates: the catalog of every aggregate seen, kept behind ingest; its events in commit order.

- `aggregates`: one row per aggregate (`aggregate_key`: type and id together): display type and
  id, a bounded id prefix for searching, the type's key for filtering, event and dead-letter
  counts, the highest version, first and last seen, the last event's type and row.
- `aggregate_catalog_progress`: the commit-order cursor up to which events are counted. It
  starts at the beginning: the catalog then counts the events already stored, behind ingest.
- `ix_events_aggregate_key` becomes (aggregate_key, commit_seq, id), partial on aggregates:
  an aggregate's events are read in commit order, and only the rows committed after a cached
  fold's; no reader orders them by version in SQL (the fold does), and events without an
  aggregate cost no index entry.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

HAS_AGGREGATE = sa.text("aggregate_key IS NOT NULL")
# Byte order, so a prefix is a range whatever the database's locale (SQLite compares bytes).
PrefixText = sa.String(64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql")


def upgrade() -> None:
    op.drop_index("ix_events_aggregate_key", table_name="events")
    op.create_index(
        "ix_events_aggregate_key",
        "events",
        ["aggregate_key", "commit_seq", "id"],
        postgresql_where=HAS_AGGREGATE,
        sqlite_where=HAS_AGGREGATE,
    )
    op.create_table(
        "aggregates",
        sa.Column("aggregate_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("aggregate_type", sa.Text),
        sa.Column("aggregate_id", sa.Text, nullable=False),
        sa.Column("type_key", sa.BigInteger),
        sa.Column("id_prefix", PrefixText, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("dead_letters", sa.BigInteger, nullable=False),
        sa.Column("max_version", sa.BigInteger),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_event_id", sa.BigInteger, nullable=False),
        sa.Column("last_event_id", sa.BigInteger, nullable=False),
        sa.Column("last_event_type", sa.Text),
    )
    op.create_index("ix_aggregates_last_seen", "aggregates", ["last_seen", "aggregate_key"])
    op.create_index("ix_aggregates_type", "aggregates", ["type_key", "last_seen", "aggregate_key"])
    op.create_index("ix_aggregates_id_prefix", "aggregates", ["id_prefix", "aggregate_key"])
    op.create_table(
        "aggregate_catalog_progress",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commit_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO aggregate_catalog_progress (id, commit_seq, event_id) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table("aggregate_catalog_progress")
    op.drop_table("aggregates")
    op.drop_index("ix_events_aggregate_key", table_name="events")
    op.create_index("ix_events_aggregate_key", "events", ["aggregate_key", "aggregate_version"])

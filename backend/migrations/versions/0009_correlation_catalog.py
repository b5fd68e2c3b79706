"""Traces of any size: an event-time index per correlation and the correlation catalog.

- `ix_events_correlation_time`: (correlation_key, coalesce(occurred_at, received_at),
  commit_seq, id), partial on correlated events. A trace's pages are ranges of it, in the order
  the waterfall shows, instead of a sort of the whole correlation.
- `correlation_services`: per correlation and service, the counts and times a trace's summary
  shows, kept behind ingest; the summary adds the events committed since (backend/store/trace.py).
- `correlation_catalog_progress`: the commit-order cursor up to which events are counted. It
  starts at the beginning: the catalog counts the events already stored, behind ingest (until
  then a trace counts what the catalog has not, as it did before).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

HAS_CORRELATION = sa.text("correlation_key IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_events_correlation_time",
        "events",
        [
            sa.text("correlation_key"),
            sa.text("coalesce(occurred_at, received_at)"),
            sa.text("commit_seq"),
            sa.text("id"),
        ],
        postgresql_where=HAS_CORRELATION,
        sqlite_where=HAS_CORRELATION,
    )
    op.create_table(
        "correlation_services",
        sa.Column("correlation_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("service_key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("correlation_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("mixed", sa.Boolean, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dead", sa.BigInteger, nullable=False),
        sa.Column("x_deaths", sa.BigInteger, nullable=False),
        sa.Column("retries", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "correlation_catalog_progress",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commit_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO correlation_catalog_progress (id, commit_seq, event_id) VALUES (1, 0, 0)"
    )


def downgrade() -> None:
    op.drop_table("correlation_catalog_progress")
    op.drop_table("correlation_services")
    op.drop_index("ix_events_correlation_time", table_name="events")

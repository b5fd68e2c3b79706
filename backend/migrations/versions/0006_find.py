"""Find: source and trace id, distinct routing keys, full-text index, commit-ordered indexes.

- `source` (metadata.source, else AMQP app_id) and `trace_id` (W3C `traceparent`), with keys.
- `routing_keys`: every routing key seen with its count and first/last time, so a wildcard
  filter is matched against the distinct keys, then answered by the routing-key index.
- Full text: SQLite FTS5 table `events_fts`; Postgres `event_search` (tsvector, GIN). Filled
  behind ingest by the search indexer, which keeps its position in `search_progress`.
- Filter indexes end in (commit_seq, id), the order every list pages in; the mostly-NULL
  trace and dead-letter columns get partial indexes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ORDER = ("commit_seq", "id")
REBUILT = {
    # name: (old columns, new columns)
    "ix_events_correlation_key": (["correlation_key", "id"], ["correlation_key", *ORDER]),
    "ix_events_event_type_key": (["event_type_key", "id"], ["event_type_key", *ORDER]),
    "ix_events_routing_key": (["routing_key", "id"], ["routing_key", *ORDER]),
}


def upgrade() -> None:
    for name in ("source", "trace_id"):
        op.add_column("events", sa.Column(name, sa.Text))
    for name in ("source_key", "trace_key"):
        op.add_column("events", sa.Column(name, sa.BigInteger))
    for name, (_, columns) in REBUILT.items():
        op.drop_index(name, table_name="events")
        op.create_index(name, "events", columns)
    op.create_index("ix_events_source_key", "events", ["source_key", *ORDER])
    for name, column in (
        ("ix_events_trace_key", "trace_key"),
        ("ix_events_dead_letter", "dead_letter"),
    ):
        if name == "ix_events_dead_letter":
            op.drop_index(name, table_name="events")
        present = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "events", [column, *ORDER], postgresql_where=present, sqlite_where=present
        )
    op.create_table(
        "routing_keys",
        sa.Column("routing_key", sa.Text, primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO routing_keys (routing_key, events, first_seen, last_seen) "
        "SELECT routing_key, count(*), min(received_at), max(received_at) FROM events "
        "GROUP BY routing_key"
    )
    op.create_table(
        "search_progress",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("commit_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO search_progress (id, commit_seq, event_id) VALUES (1, 0, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE TABLE event_search (event_id BIGINT PRIMARY KEY, doc TSVECTOR NOT NULL)")
        op.execute("CREATE INDEX ix_event_search_doc ON event_search USING GIN (doc)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE events_fts USING fts5(words, "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS event_search")
    else:
        op.execute("DROP TABLE IF EXISTS events_fts")
    op.drop_table("search_progress")
    op.drop_table("routing_keys")
    op.drop_index("ix_events_trace_key", table_name="events")
    op.drop_index("ix_events_source_key", table_name="events")
    op.drop_index("ix_events_dead_letter", table_name="events")
    op.create_index("ix_events_dead_letter", "events", ["dead_letter", "id"])
    for name, (columns, _) in REBUILT.items():
        op.drop_index(name, table_name="events")
        op.create_index(name, "events", columns)
    for name in ("source_key", "trace_key", "source", "trace_id"):
        op.drop_column("events", name)

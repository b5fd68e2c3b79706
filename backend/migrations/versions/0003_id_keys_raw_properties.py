"""Hash keys for ids of any length, raw property bytes, and a problem note per row.

Ids from bus data can be longer than a btree index entry may be (Postgres refuses rows over
~2704 bytes, and a refused row stopped every batch behind it). The indexes now hold a 64-bit
hash of each id (`*_key`); the text columns keep the display form. Existing rows get keys
computed from their stored text (ids stored before this revision were cut at 512 characters
with NUL made visible, so such an id's key is that of its stored form).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from eventscope.backend.envelope import aggregate_key, id_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEYS = ("event_type_key", "correlation_key", "aggregate_key", "message_id_key")
_CHUNK = 5000


def _backfill() -> None:
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.BigInteger),
        sa.column("event_type", sa.Text),
        sa.column("correlation_id", sa.Text),
        sa.column("aggregate_type", sa.Text),
        sa.column("aggregate_id", sa.Text),
        sa.column("message_id", sa.Text),
        *(sa.column(name, sa.BigInteger) for name in KEYS),
    )
    update = (
        events.update()
        .where(events.c.id == sa.bindparam("row_id"))
        .values({name: sa.bindparam(f"v_{name}") for name in KEYS})
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                events.c.id,
                events.c.event_type,
                events.c.correlation_id,
                events.c.aggregate_type,
                events.c.aggregate_id,
                events.c.message_id,
            )
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(_CHUNK)
        ).all()
        if not rows:
            return
        bind.execute(
            update,
            [
                {
                    "row_id": r.id,
                    "v_event_type_key": id_key(r.event_type),
                    "v_correlation_key": id_key(r.correlation_id),
                    "v_aggregate_key": aggregate_key(r.aggregate_type, r.aggregate_id),
                    "v_message_id_key": id_key(r.message_id),
                }
                for r in rows
            ],
        )
        last = rows[-1].id


def upgrade() -> None:
    op.add_column("events", sa.Column("raw_properties", sa.LargeBinary))
    op.add_column("events", sa.Column("problem", sa.Text))
    for name in KEYS:
        op.add_column("events", sa.Column(name, sa.BigInteger))
    _backfill()
    for name in (
        "ix_events_correlation",
        "ix_events_aggregate",
        "ix_events_event_type",
        "ix_events_message_id",
    ):
        op.drop_index(name, table_name="events")
    op.create_index("ix_events_correlation_key", "events", ["correlation_key", "id"])
    op.create_index("ix_events_aggregate_key", "events", ["aggregate_key", "aggregate_version"])
    op.create_index("ix_events_event_type_key", "events", ["event_type_key", "id"])
    op.create_index("ix_events_message_id_key", "events", ["message_id_key"])


def downgrade() -> None:
    for name in (
        "ix_events_correlation_key",
        "ix_events_aggregate_key",
        "ix_events_event_type_key",
        "ix_events_message_id_key",
    ):
        op.drop_index(name, table_name="events")
    for name in (*KEYS, "problem", "raw_properties"):
        op.drop_column("events", name)
    op.create_index("ix_events_correlation", "events", ["correlation_id", "id"])
    op.create_index(
        "ix_events_aggregate", "events", ["aggregate_type", "aggregate_id", "aggregate_version"]
    )
    op.create_index("ix_events_event_type", "events", ["event_type", "id"])
    op.create_index("ix_events_message_id", "events", ["message_id"])

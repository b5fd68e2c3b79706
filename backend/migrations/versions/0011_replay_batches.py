"""Bulk replays: the batches, their messages in order, and the batch of each ledger row.

- `replay_batches`: one row per bulk replay (who, why, the selection as given and in words, the
  commit position it is bounded to, an optional target, counts, state) — backend/replay_bulk.py.
- `replay_batch_items`: its messages, numbered in the order they are replayed, written while the
  selection is read (the worker holds one chunk at a time, whatever the size).
- `replays.batch_id`: the bulk replay a ledger row belongs to (a resumed batch skips the
  messages it already has a row for).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("replays") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40)))
    op.create_index("ix_replays_batch", "replays", ["batch_id", "event_id"])
    op.create_index("ix_replays_batch_order", "replays", ["batch_id", "id"])
    op.create_table(
        "replay_batches",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(40), nullable=False, unique=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("reason", sa.Text),
        sa.Column("selection", sa.Text),
        sa.Column("ids", sa.Text),
        sa.Column("filter", sa.Text),
        sa.Column("fingerprint", sa.Text),
        sa.Column("dead_letters", sa.Boolean, nullable=False),
        sa.Column("until_seq", sa.BigInteger, nullable=False),
        sa.Column("until_id", sa.BigInteger, nullable=False),
        sa.Column("target_kind", sa.String(16)),
        sa.Column("target_name", sa.Text),
        sa.Column("routing_key", sa.Text),
        sa.Column("rate", sa.Float),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("done", sa.Integer, nullable=False),
        sa.Column("delivered", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("owner", sa.String(40)),
        sa.Column("leased_at", sa.DateTime(timezone=True)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_replay_batches_state", "replay_batches", ["state", "id"])
    op.create_table(
        "replay_batch_items",
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("replay_batch_items")
    op.drop_index("ix_replay_batches_state", "replay_batches")
    op.drop_table("replay_batches")
    op.drop_index("ix_replays_batch_order", "replays")
    op.drop_index("ix_replays_batch", "replays")
    with op.batch_alter_table("replays") as batch:
        batch.drop_column("batch_id")

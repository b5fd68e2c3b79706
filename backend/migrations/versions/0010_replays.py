"""Replays: the ledger, the one-in-flight guard and what was done about each dead letter.

- `replays`: one row per replay (who, when, why, target, state, result), written before the
  publish and moved to delivered, failed or unknown after it (backend/replay.py).
- `replay_inflight`: one row per stored message being replayed; its primary key refuses a
  second replay of the same message while one is in flight.
- `dead_letter_states`: replaying, replayed or discarded; a dead letter without a row is
  unresolved.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "replays",
        sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("replay_id", sa.String(40), nullable=False, unique=True),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("original_id", sa.Text, nullable=False),
        sa.Column("dead_letter", sa.Boolean, nullable=False),
        sa.Column("target_kind", sa.String(16), nullable=False),
        sa.Column("target_name", sa.Text, nullable=False),
        sa.Column("routing_key", sa.Text, nullable=False),
        sa.Column("edited", sa.Boolean, nullable=False),
        sa.Column("replay_count", sa.Integer, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("role", sa.String(16)),
        sa.Column("reason", sa.Text),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("failed_again_id", sa.BigInteger),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_replays_event", "replays", ["event_id", "id"])
    op.create_index("ix_replays_state", "replays", ["state", "requested_at"])
    op.create_table(
        "replay_inflight",
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("replay_id", sa.String(40), nullable=False),
    )
    op.create_table(
        "dead_letter_states",
        sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("prior", sa.String(16)),
        sa.Column("replay_id", sa.String(40)),
        sa.Column("actor", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dead_letter_states_replay", "dead_letter_states", ["replay_id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letter_states_replay", "dead_letter_states")
    op.drop_table("dead_letter_states")
    op.drop_table("replay_inflight")
    op.drop_index("ix_replays_state", "replays")
    op.drop_index("ix_replays_event", "replays")
    op.drop_table("replays")

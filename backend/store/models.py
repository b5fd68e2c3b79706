"""The schema, as SQLAlchemy Core tables (the hot path needs no ORM objects).

One row per observation of a publish. `id` is the internal row id; `commit_seq` + `id` is the
cursor every page, the API and the live feed order by (backend/store/paging.py).
`fingerprint` + `observation` make storage idempotent: a tap-queue redelivery of a stored
publish is skipped (told apart through `pending_acks`, below), a second publish of the same bytes
becomes observation 2 and is shown as a duplicate. Changes go through alembic
(backend/migrations).

Ids taken from bus data (event type, correlation, aggregate, message id) can be of any
length: their text columns hold a display form (capped, NUL made visible) and are not indexed;
each has a `*_key` column, a 64-bit hash of the full original value, that the indexes hold.
Exact lookups compare key and text (`backend.envelope.id_key`), so a prefix or a look-alike
never matches another id, and every index entry fits Postgres' btree row limit.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects import postgresql

metadata = MetaData()

RowId = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("commit_seq", BigInteger, nullable=False, server_default="0"),  # see paging.py
    Column("fingerprint", LargeBinary(16), nullable=False),
    Column("observation", Integer, nullable=False, default=1),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("exchange", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("redelivered", Boolean, nullable=False),
    Column("event_id", Text),
    Column("event_type", Text),
    Column("correlation_id", Text),
    Column("causation_id", Text),
    Column("aggregate_type", Text),
    Column("aggregate_id", Text),
    Column("aggregate_version", BigInteger),
    Column("occurred_at", DateTime(timezone=True)),
    Column("message_id", Text),
    Column("content_type", Text),
    Column("dead_letter", String(16)),  # None, "x-death" or "dlq-key"
    Column("body_kind", String(8), nullable=False),  # json, text, binary, empty
    Column("body_size", BigInteger, nullable=False),
    Column("body_truncated", Boolean, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("properties", Text, nullable=False),  # typed JSON, backend.fieldtable
    Column("headers", Text, nullable=False),  # typed JSON, backend.fieldtable
    Column("originals", Text),  # typed values altered to fit a text column (NUL bytes)
    Column("raw_properties", LargeBinary),  # the content header's property bytes, as received
    Column("problem", Text),  # why the row is incomplete (undecodable, stored reduced), or null
    Column("event_type_key", BigInteger),
    Column("correlation_key", BigInteger),
    Column("aggregate_key", BigInteger),  # type and id together
    Column("message_id_key", BigInteger),
    Column("source", Text),  # the producing service: metadata.source, else AMQP app_id
    Column("source_key", BigInteger),
    Column("trace_id", Text),  # W3C traceparent's trace id
    Column("trace_key", BigInteger),
    Column("captured_from", Text),  # the owned dead-letter queue it was taken from, or null
    Index("ux_events_fingerprint", "fingerprint", "observation", unique=True),
    Index("ix_events_commit_order", "commit_seq", "id"),
    # Filter indexes end in the commit order every list pages by (paging.py).
    Index("ix_events_correlation_key", "correlation_key", "commit_seq", "id"),
    Index(  # an aggregate's events in commit order (backend/store/aggregates.py)
        "ix_events_aggregate_key",
        "aggregate_key",
        "commit_seq",
        "id",
        sqlite_where=text("aggregate_key IS NOT NULL"),
        postgresql_where=text("aggregate_key IS NOT NULL"),
    ),
    Index("ix_events_routing_key", "routing_key", "commit_seq", "id"),
    Index("ix_events_event_type_key", "event_type_key", "commit_seq", "id"),
    Index("ix_events_message_id_key", "message_id_key"),
    Index("ix_events_received_at", "received_at"),
    # Mostly NULL columns: partial indexes, so ordinary events cost no index entry.
    Index(
        "ix_events_dead_letter",
        "dead_letter",
        "commit_seq",
        "id",
        sqlite_where=text("dead_letter IS NOT NULL"),
        postgresql_where=text("dead_letter IS NOT NULL"),
    ),
    Index("ix_events_source_key", "source_key", "commit_seq", "id"),
    Index(
        "ix_events_trace_key",
        "trace_key",
        "commit_seq",
        "id",
        sqlite_where=text("trace_key IS NOT NULL"),
        postgresql_where=text("trace_key IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

# A trace reads one correlation in event time (occurred, else received), then commit order:
# its first page is a range of this index, not a sort of every event the correlation holds
# (backend/store/trace.py).
Index(
    "ix_events_correlation_time",
    events.c.correlation_key,
    func.coalesce(events.c.occurred_at, events.c.received_at),
    events.c.commit_seq,
    events.c.id,
    sqlite_where=text("correlation_key IS NOT NULL"),
    postgresql_where=text("correlation_key IS NOT NULL"),
)

SUMMARY_COLUMNS = (
    events.c.id,
    events.c.commit_seq,
    events.c.observation,
    events.c.received_at,
    events.c.exchange,
    events.c.routing_key,
    events.c.redelivered,
    events.c.event_id,
    events.c.event_type,
    events.c.correlation_id,
    events.c.causation_id,
    events.c.aggregate_type,
    events.c.aggregate_id,
    events.c.aggregate_version,
    events.c.occurred_at,
    events.c.message_id,
    events.c.content_type,
    events.c.dead_letter,
    events.c.body_kind,
    events.c.body_size,
    events.c.body_truncated,
    events.c.problem,
    events.c.source,
    events.c.trace_id,
    # The keys, so a row's ids can be compared exactly in memory (the live view's filters).
    events.c.event_type_key,
    events.c.correlation_key,
    events.c.aggregate_key,
    events.c.message_id_key,
    events.c.source_key,
    events.c.trace_key,
)

# Hash keys of ids (see the module docstring): in summaries for exact comparisons in memory,
# never shown.
KEY_COLUMNS = (
    "event_type_key",
    "correlation_key",
    "aggregate_key",
    "message_id_key",
    "source_key",
    "trace_key",
)

# Every routing key seen, with how often and when: wildcard filters are matched against these
# (few) keys, then answered by the routing-key index (backend/store/search.py).
routing_keys = Table(
    "routing_keys",
    metadata,
    Column("routing_key", Text, primary_key=True),
    Column("events", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
)


def progress_table(name: str) -> Table:
    """Where a follower of the stored events stands (one row, id 1): every event up to this
    commit-order cursor is taken in (store/catalogs.py `FollowsEvents`)."""
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("commit_seq", BigInteger, nullable=False),
        Column("event_id", BigInteger, nullable=False),
    )


# Where the search indexer (backend/search_index.py) stands: every event up to this cursor is in
# the full-text index (SQLite FTS5 `events_fts`, Postgres `event_search`, created by migration).
search_progress = progress_table("search_progress")

# One row per committed batch whose ack the broker has not confirmed yet: the fingerprints of
# every tap-queue delivery the batch took (stored or recognised as a redelivery), written in the
# batch's own transaction. A delivery flagged `redelivered` is a tap redelivery only when a batch
# of a recorder that is gone (`holder`: its session, see backend/ingest/recorder.py) still lists
# its fingerprint; each listed fingerprint absorbs one redelivery and passes to the batch that
# absorbed it. Rows go once the broker confirmed the batch's ack, or when they are old.
pending_acks = Table(
    "pending_acks",
    metadata,
    Column("batch", BigInteger, primary_key=True, autoincrement=False),  # random per batch
    Column("holder", BigInteger, nullable=False),  # the recorder session that holds the deliveries
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("fingerprints", LargeBinary, nullable=False),  # 16 bytes per delivery, concatenated
    Column("stored", Integer, nullable=False),  # the batch's result, for a retried commit
    Column("skipped", Integer, nullable=False),
    Column("duplicates", Integer, nullable=False),
    Index("ix_pending_acks_holder", "holder"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", String(16)),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("reason", Text),
    Column("result", String(16), nullable=False),
    Column("client", Text),
    Column("details", Text),
    Index("ix_audit_log_at", "at"),
    sqlite_autoincrement=True,
)

# The event type catalog, kept behind ingest by backend/type_catalog.py: one row per event
# type, and per routing key for events without a type; dead letters are left out. `type_key`
# is the events' `event_type_key` for a type, a keyed hash of the routing key otherwise. The
# JSON columns are bounded: shape (backend/shapes.py), sample (backend/payload_sample.py),
# at most a few routing keys and recent changes.
event_types = Table(
    "event_types",
    metadata,
    Column("type_key", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(12), nullable=False),  # "type" or "routing_key"
    Column("name", Text, nullable=False),  # the type's display form, or the routing key
    Column("events", BigInteger, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("first_event_id", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
    Column("sample_event_id", BigInteger),
    Column("sample", Text),
    Column("shape", Text, nullable=False),
    Column("routing_keys", Text, nullable=False),  # [[key, events], ...], busiest first
    Column("other_routing_keys", BigInteger, nullable=False),  # events on keys not listed
    Column("changes", BigInteger, nullable=False),  # shape changes flagged
    Column("last_change_at", DateTime(timezone=True)),
    Column("recent_changes", Text, nullable=False),  # the newest few, newest first
    Index("ix_event_types_last_seen", "last_seen"),
)

# Every flagged shape change: the event that first showed it and what changed.
type_shape_changes = Table(
    "type_shape_changes",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("type_key", BigInteger, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("changes", Text, nullable=False),
    Index("ix_type_shape_changes_type", "type_key", "id"),
    sqlite_autoincrement=True,
)

# Events per type per minute (unix minute), the last hour or so: the types page's rate chart.
type_rate_buckets = Table(
    "type_rate_buckets",
    metadata,
    Column("type_key", BigInteger, primary_key=True, autoincrement=False),
    Column("minute", BigInteger, primary_key=True, autoincrement=False),
    Column("events", BigInteger, nullable=False),
    Index("ix_type_rate_buckets_minute", "minute"),
)

# Where the type catalog stands: every event up to this cursor is counted.
type_catalog_progress = progress_table("type_catalog_progress")

# The aggregate catalog, kept behind ingest by backend/aggregate_catalog.py: one row per
# aggregate (type and id: the events' `aggregate_key`). Type and id are display forms, as in
# `events`; `type_key` is the key of the type's display form (filtering by type), `id_prefix`
# the id's first 64 characters in byte order (searching by prefix without LIKE).
aggregates = Table(
    "aggregates",
    metadata,
    Column("aggregate_key", BigInteger, primary_key=True, autoincrement=False),
    Column("aggregate_type", Text),
    Column("aggregate_id", Text, nullable=False),
    Column("type_key", BigInteger),
    Column(
        "id_prefix",
        String(64).with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql"),
        nullable=False,
    ),
    Column("events", BigInteger, nullable=False),  # every observation, dead letters included
    Column("dead_letters", BigInteger, nullable=False),
    Column("max_version", BigInteger),  # the highest version of an event that is no dead letter
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("first_event_id", BigInteger, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),  # the newest in commit order
    Column("last_event_type", Text),
    Index("ix_aggregates_last_seen", "last_seen", "aggregate_key"),
    Index("ix_aggregates_type", "type_key", "last_seen", "aggregate_key"),
    Index("ix_aggregates_id_prefix", "id_prefix", "aggregate_key"),
)

# Where the aggregate catalog stands: every event up to this cursor is counted.
aggregate_catalog_progress = progress_table("aggregate_catalog_progress")

# The correlation catalog, kept behind ingest by backend/correlation_catalog.py: per
# correlation and service (`service_key`: the source's key, 0 for none), what a trace's summary
# needs, so a 10,000-event trace never reads all its events to say what it holds. Ids are
# display forms as in `events`; `mixed` says two different ids (or services) share one key, and
# a trace of that key counts its events instead (backend/store/trace.py).
correlation_services = Table(
    "correlation_services",
    metadata,
    Column("correlation_key", BigInteger, primary_key=True, autoincrement=False),
    Column("service_key", BigInteger, primary_key=True, autoincrement=False),
    Column("correlation_id", Text, nullable=False),
    Column("source", Text),
    Column("mixed", Boolean, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),  # event time
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("dead", BigInteger, nullable=False),  # dead letters of every kind, retries included
    Column("x_deaths", BigInteger, nullable=False),  # x-death copies
    Column("retries", BigInteger, nullable=False),  # x-death copies that are TTL retries
)

# Where the correlation catalog stands: every event up to this cursor is counted.
correlation_catalog_progress = progress_table("correlation_catalog_progress")

# The replay ledger (backend/replay.py): one row per replay, moving through persisted states —
# publishing (written before the publish), then delivered (confirmed), failed (nacked,
# returned, refused) or unknown (eventscope stopped between publish and the ledger's update:
# it may have arrived; its replay id tells a duplicate). `failed_again_id` is the dead letter
# the replayed message became when it failed once more.
replays = Table(
    "replays",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("replay_id", String(40), nullable=False, unique=True),
    Column("event_id", BigInteger, nullable=False),  # the stored row that was replayed
    Column("original_id", Text, nullable=False),
    Column("dead_letter", Boolean, nullable=False),
    Column("target_kind", String(16), nullable=False),  # exchange | queue
    Column("target_name", Text, nullable=False),
    Column("routing_key", Text, nullable=False),
    Column("edited", Boolean, nullable=False),
    Column("replay_count", Integer, nullable=False),
    Column("actor", Text, nullable=False),
    Column("role", String(16)),
    Column("reason", Text),
    Column("state", String(16), nullable=False),
    Column("result", Text),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("failed_again_id", BigInteger),
    Column("batch_id", String(40)),  # the bulk replay it belongs to, if any
    Index("ix_replays_event", "event_id", "id"),
    Index("ix_replays_state", "state", "requested_at"),
    Index("ix_replays_batch", "batch_id", "event_id"),
    Index("ix_replays_batch_order", "batch_id", "id"),
    sqlite_autoincrement=True,
)

# At most one replay of a stored row in flight: inserted with the ledger row, deleted when it
# ends; the primary key refuses a second.
replay_inflight = Table(
    "replay_inflight",
    metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("replay_id", String(40), nullable=False),
)

# What was done about a dead letter: replaying, replayed (delivered; resolved once quiet) or
# discarded. No row: unresolved.
dead_letter_states = Table(
    "dead_letter_states",
    metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False),
    Column("prior", String(16)),  # what it returns to if the replay in flight fails
    Column("replay_id", String(40)),
    Column("actor", Text),
    Column("reason", Text),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index("ix_dead_letter_states_replay", "replay_id"),
)

# Bulk replays (backend/replay_bulk.py): one row per operator action over many messages, with
# the selection in words and as it was given (ids, filter pairs, group), the commit position it
# is bounded to, an optional target, counts and state (collecting, running, cancelling,
# finished, cancelled, failed).
replay_batches = Table(
    "replay_batches",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False, unique=True),
    Column("actor", Text, nullable=False),
    Column("role", String(16)),
    Column("reason", Text),
    Column("selection", Text),
    Column("ids", Text),
    Column("filter", Text),
    Column("fingerprint", Text),
    Column("dead_letters", Boolean, nullable=False),
    Column("until_seq", BigInteger, nullable=False),
    Column("until_id", BigInteger, nullable=False),
    Column("target_kind", String(16)),
    Column("target_name", Text),
    Column("routing_key", Text),
    Column("rate", Float),
    Column("state", String(16), nullable=False),
    Column("total", Integer, nullable=False),
    Column("done", Integer, nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("owner", String(40)),  # the worker carrying it (a lease: backend/store/replay_batches)
    Column("leased_at", DateTime(timezone=True)),
    Index("ix_replay_batches_state", "state", "id"),
    sqlite_autoincrement=True,
)

# A bulk replay's messages in the order they are replayed, written while the selection is read.
replay_batch_items = Table(
    "replay_batch_items",
    metadata,
    Column("batch_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("event_id", BigInteger, nullable=False),
)

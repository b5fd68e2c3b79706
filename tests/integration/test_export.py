"""Export (backend/export.py) on both databases: every event a filter selects, each once, in
commit order, with bodies as JSON, text or base64; read back (backend/export_read.py) it gives
the bytes that were published, which the real broker and recorder take for the same message;
viewers get masked exports; rows stored reduced are exported with what was kept."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.export import (
    PAGE_SIZE,
    Format,
    Span,
    export_stream,
    matching_pages,
)
from eventscope.backend.export_read import read_export, read_records
from eventscope.backend.filters import EventFilter, parse_filter
from eventscope.backend.ingest.committer import reduced_forms
from eventscope.backend.redaction import MASK, Redactor
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import Cursor
from tests.conftest import AMQP_URL, Broker, Names, eventually, make_settings
from tests.integration.test_byte_exact import CORPUS as WIRE_CORPUS
from tests.integration.test_hostile_ingest import CORPUS as HOSTILE_CORPUS
from tests.integration.test_ingest import stored_rows
from tests.integration.test_poison_frames import POISON
from tests.rawamqp import RawPublisher

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def delivery(
    routing_key: str,
    body: bytes,
    *,
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    minutes: int = 0,
) -> Delivery:
    return Delivery(
        "events",
        routing_key,
        False,
        properties or {},
        headers,
        body,
        T0 + dt.timedelta(minutes=minutes),
        raw_properties=b"\x00\x00",  # no properties, as the wire says it
    )


def seed(n: int, routing_key: str = "order.created", **extra: Any) -> dict[str, Any]:
    body = {"id": f"evt_{n}", "eventType": "OrderCreated", "n": n, **extra}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return to_row(delivery(routing_key, raw, properties={"message_id": f"m{n}"}), 1 << 20)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    opened = EventStore(database_url)
    yield opened
    await opened.close()


def flt(**params: Any) -> EventFilter:
    return parse_filter({k: v if isinstance(v, list) else [v] for k, v in params.items()})


async def export(
    store: EventStore,
    f: EventFilter | None = None,
    fmt: Format = "ndjson",
    **options: Any,
) -> bytes:
    return b"".join([chunk async for chunk in export_stream(store, f or flt(), fmt, **options)])


def records(data: bytes) -> list[dict[str, Any]]:
    return list(read_records(data))


async def write_many(store: EventStore, rows: list[dict[str, Any]], batch: int = 1000) -> None:
    for start in range(0, len(rows), batch):
        await store.write(rows[start : start + batch])


# -- what is exported ---------------------------------------------------------------------------


async def test_a_filtered_export_holds_every_match_once_across_pages_in_commit_order(
    store: EventStore,
) -> None:
    keys = ("order.created", "order.paid", "payment.failed")
    await write_many(store, [seed(n, keys[n % 3]) for n in range(1234)])

    data = await export(store, flt(routing_key="order.*"), page_size=100)
    got = records(data)
    expected = [n for n in range(1234) if n % 3 != 2]
    assert [r["body"]["n"] for r in got] == expected  # all pages, oldest first, each once
    assert {r["routing_key"] for r in got} == {"order.created", "order.paid"}
    cursors = [Cursor.parse(r["cursor"]) for r in got]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)

    everything = records(await export(store, page_size=PAGE_SIZE))
    assert len(everything) == 1234
    assert records(await export(store, flt(type="NoSuchType"))) == []


async def test_header_filters_scan_and_cursors_bound_the_export(store: EventStore) -> None:
    rows = [seed(n) for n in range(60)]
    for n, row in enumerate(rows):
        row["headers"] = json.dumps({"x-tenant": ["s", "acme" if n % 4 == 0 else "other"]})
    await write_many(store, rows)
    acme = records(await export(store, flt(header="x-tenant:acme"), page_size=4))
    assert [r["body"]["n"] for r in acme] == list(range(0, 60, 4))

    every = records(await export(store))
    middle = Span(after=Cursor.parse(every[9]["cursor"]), before=Cursor.parse(every[20]["cursor"]))
    inside = records(await export(store, span=middle, page_size=3))
    assert [r["body"]["n"] for r in inside] == list(range(10, 20))


async def test_ndjson_and_json_hold_the_same_valid_records(store: EventStore) -> None:
    await write_many(store, [seed(n) for n in range(7)])
    ndjson = await export(store, fmt="ndjson", page_size=3)
    array = await export(store, fmt="json", page_size=3)
    lines = ndjson.decode("utf-8").splitlines()
    assert len(lines) == 7 and ndjson.endswith(b"\n")
    assert [json.loads(line) for line in lines] == json.loads(array)
    assert json.loads(await export(store, flt(type="none"), fmt="json")) == []
    assert await export(store, flt(type="none"), fmt="ndjson") == b""


async def test_events_arriving_during_an_export_are_neither_repeated_nor_skipped(
    store: EventStore,
) -> None:
    await write_many(store, [seed(n) for n in range(50)])
    seen: list[int] = []
    stream = export_stream(store, flt(routing_key="order.#"), "ndjson", page_size=10)
    async for chunk in stream:
        seen += [r["body"]["n"] for r in records(chunk)]
        if len(seen) == 10:  # new events land behind and among the pages still to read
            await store.write([seed(n) for n in range(1000, 1030)])
    assert seen == list(range(50))


# -- bodies, read back exactly -----------------------------------------------------------------

BODIES: list[tuple[str, bytes, str]] = [
    ("compact json", b'{"id":"evt_1","data":{"total":62.49,"items":[1,2]},"ok":true}', "json"),
    ("json with spaces", b'{"id": "evt_1", "total": 62.49}', "text"),
    ("json unicode", '{"name":"Zoë ✓ 🎉","rtl":"\u202eabc"}'.encode(), "json"),
    ("json escaped unicode", b'{"name":"Zo\\u00eb"}', "text"),
    ("json duplicate keys", b'{"a":1,"a":2}', "text"),
    ("json NaN", b'{"total":NaN}', "text"),
    ("json lone surrogate", b'{"name":"\\ud800"}', "text"),
    ("json NUL", b'{"nul":"a\\u0000b"}', "json"),
    ("json big integer", b'{"n":123456789012345678901234567890}', "json"),
    ("json float form", b'{"n":1e5}', "text"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "text"),
    ("plain text", b"hello, not json", "text"),
    ("markup", b'<script>alert(1)</script><div hx-get="/api/x" hx-trigger="load">', "text"),
    ("NUL text", b"a\x00b", "text"),
    ("empty", b"", "text"),
    ("invalid utf-8", b"\xff\xfe\xfa not utf-8 \xc3\x28", "base64"),
    ("binary", bytes(range(256)), "base64"),
]


async def test_every_body_is_exported_as_json_text_or_base64_and_read_back_exactly(
    store: EventStore,
) -> None:
    await store.write(
        [to_row(delivery(f"body.{i}", body), 1 << 20) for i, (_, body, _) in enumerate(BODIES)]
    )
    for fmt in ("ndjson", "json"):
        data = await export(store, fmt=fmt)  # type: ignore[arg-type]
        messages = list(read_export(data))
        assert len(messages) == len(BODIES)
        for (what, body, encoding), message in zip(BODIES, messages, strict=True):
            assert message.record["body_encoding"] == encoding, what
            assert message.body == body, what
            assert message.exact, what


async def test_a_body_stored_truncated_says_so_and_is_not_exact(store: EventStore) -> None:
    await store.write([to_row(delivery("big", b'{"a":"' + b"x" * 100 + b'"}'), 50)])
    (message,) = read_export(await export(store))
    assert message.record["body_truncated"] is True
    assert message.body == b'{"a":"' + b"x" * 44
    assert not message.exact and "truncated" in (message.why_not or "")


async def test_rows_stored_reduced_are_exported_with_what_was_kept_and_the_problem(
    store: EventStore,
) -> None:
    row = to_row(delivery("odd.ключ", b'{"id":"evt_r"}', headers={"h": "v"}), 1 << 20)
    row["raw_properties"] = b"\x00\x00"
    reduced, bare = reduced_forms(row, ValueError("refused"))
    bare = {**bare, "fingerprint": b"\x01" * 16}
    await store.write([reduced, bare])
    first, second = read_export(await export(store))
    assert first.record["problem"].startswith("stored reduced")
    assert first.body == b'{"id":"evt_r"}' and first.record["body_encoding"] == "text"
    assert first.headers == {} and first.raw_properties == b"\x00\x00"
    assert second.body == b"" and second.record["body_truncated"] is True
    assert not first.exact and not second.exact
    assert "reduced" in (first.why_not or "")


# -- viewers ------------------------------------------------------------------------------------

SECRETS = ("hunter2", "s3cr3t-token", "4111111111111111", "pair-secret")


async def test_a_viewers_export_is_masked_says_so_and_holds_no_raw_bytes(
    store: EventStore,
) -> None:
    await store.write(
        [
            to_row(
                delivery(
                    "user.created",
                    b'{"user":"ann","password":"hunter2","card":4111111111111111}',
                    headers={"authorization": "Bearer s3cr3t-token", "x-note": "token=pair-secret"},
                    properties={"message_id": "m-4111111111111111"},
                ),
                1 << 20,
            ),
            to_row(delivery("note.text", b"login password=hunter2 ok"), 1 << 20),
            to_row(delivery("blob.bin", b"\xff\x00password=hunter2\xfe"), 1 << 20),
        ]
    )
    data = await export(store, mask=Redactor())
    text = data.decode("utf-8")
    assert not [secret for secret in SECRETS if secret in text]
    got = records(data)
    assert all(r["masked"] is True and r["raw_properties"] is None for r in got)
    assert not [r for r in got if "body_base64" in r]  # masking cannot see into raw bytes
    assert got[0]["body"]["password"] == MASK and got[0]["body"]["user"] == "ann"
    assert got[0]["headers"]["authorization"] == ["s", MASK]
    assert got[1]["body_encoding"] == "text" and "ok" in got[1]["body_text"]
    assert got[2]["body_encoding"] == "withheld"
    assert all(not message.exact for message in read_export(data))

    operator = records(await export(store))
    assert operator[0]["masked"] is False and operator[0]["body"]["password"] == "hunter2"


# -- byte for byte through the real broker -----------------------------------------------------


async def test_an_export_read_back_republishes_byte_for_byte(
    database_url: str, names: Names, broker: Broker, start_recorder: Any
) -> None:
    """Awkward properties, every header type and width, routing keys that are not UTF-8 or
    hold NUL, hostile bodies: exported, read back and published again, each message is taken
    by the recorder for the very same publish (same fingerprint, observation 2)."""
    run = await start_recorder(make_settings(database_url, names))
    sent: list[tuple[str | bytes, bytes, bytes | None]] = []  # routing key, body, properties
    publisher = RawPublisher(AMQP_URL)
    try:
        for i, (what, raw) in enumerate(WIRE_CORPUS):
            body = b"wire %d" % i
            assert await publisher.publish(names.exchange, "wire.exact", body, raw), what
            sent.append(("wire.exact", body, raw))
        for what, key, raw in POISON:
            body = b"poison " + what.encode()
            assert await publisher.publish(names.exchange, key, body, raw), what
            sent.append((key, body, raw))
    finally:
        await publisher.close()
    for key, body, props in HOSTILE_CORPUS:
        if len(body) > 1 << 20:
            continue  # the 16 MiB body is covered by the memory test; not worth the minutes
        await broker.publish(key, body, **props)
        sent.append((key, body, None))  # properties as aio-pika encoded them
    await eventually(lambda: run.recorder.status.stored >= len(sent), 60, "everything stored")

    async with _opened(database_url) as store:
        data = await export(store, page_size=7)
    messages = list(read_export(data))
    stored = await stored_rows(database_url)
    assert len(messages) == len(sent) == len(stored)
    for (key, body, raw), message, row in zip(sent, messages, stored, strict=True):
        assert message.exact, (key, message.why_not)
        assert message.routing_key == key
        assert message.exchange == names.exchange
        assert message.body == body
        assert message.raw_properties == bytes(row["raw_properties"])
        if raw is not None:
            assert message.raw_properties == raw, key

    republisher = RawPublisher(AMQP_URL)
    try:
        for message in messages:
            assert message.raw_properties is not None
            assert await republisher.publish(
                str(message.exchange), message.routing_key, message.body, message.raw_properties
            ), message.routing_key
    finally:
        await republisher.close()
    total = 2 * len(sent)
    await eventually(lambda: run.recorder.status.stored >= total, 60, "the republished copies")
    await run.halt()
    rows = await stored_rows(database_url)
    originals, copies = rows[: len(sent)], rows[len(sent) :]
    for original, copy in zip(originals, copies, strict=True):
        assert copy["fingerprint"] == original["fingerprint"], original["routing_key"]
        assert copy["observation"] == 2
        assert bytes(copy["raw_properties"]) == bytes(original["raw_properties"])


class _opened:
    """`async with _opened(url) as store`: a store closed afterwards."""

    def __init__(self, url: str) -> None:
        self.store = EventStore(url)

    async def __aenter__(self) -> EventStore:
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


# -- constant memory -----------------------------------------------------------------------------


async def test_the_export_streams_page_by_page(store: EventStore) -> None:
    """The first bytes go out after one page is read, and the store is read in pages of
    PAGE_SIZE: never all rows at once."""
    await write_many(store, [seed(n) for n in range(2000)])
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    sa_event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        stream = export_stream(store, flt(routing_key="order.created"), "ndjson")
        first = await anext(stream)
        assert len(records(first)) <= PAGE_SIZE
        assert len(statements) <= 4, statements  # the newest cursor, matching keys, 1 page, rows
        rest = [chunk async for chunk in stream]
    finally:
        sa_event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert len(records(first + b"".join(rest))) == 2000
    assert len(rest) >= 3  # one chunk per page at least
    assert len(statements) <= 2 + 3 * (2000 // PAGE_SIZE + 1)


async def test_memory_stays_bounded_while_20k_events_stream(store: EventStore) -> None:
    """20,000 events of 2 KiB make a 50 MiB export; what the export holds at any moment is
    a page and a chunk, a small part of it."""
    filler = "x" * 2000
    await write_many(store, [seed(n, note=filler) for n in range(20_000)], batch=2000)
    total = 0
    tracemalloc.start()
    try:
        async for chunk in export_stream(store, flt(), "ndjson"):
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 40 * 1024 * 1024
    assert peak < total / 4, f"peak {peak:,} bytes for an export of {total:,}"


async def test_matching_pages_reads_nothing_from_an_empty_store(store: EventStore) -> None:
    assert [page async for page in matching_pages(store, flt())] == []

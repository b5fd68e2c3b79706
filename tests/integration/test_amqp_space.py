"""The whole AMQP space through the real broker, recorder, database and web app (hypothesis).

Every example is a batch with one message per body kind, every property, every header type,
nested and deep tables, out-of-range timestamps, text that is not UTF-8 in every short and long
string, routing keys of 0 and 255 bytes — sent as raw frames where client libraries refuse.
Every message the broker accepts must be stored exactly once (routing key, property bytes and
body as sent) and every page and API answer about it must be 200, with nothing executable in
the HTML and strict JSON from the API, for an operator and for a viewer.

Coverage does not depend on the seed: each batch holds every body kind, every property and
every table tag and header nesting depths up to 2000. `ES_PROPERTY_EXAMPLES` sets how many
batches run per database (default 12, ~25 s); `ES_PROPERTY_SHRINK=1` shrinks a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from eventscope.backend.amqp_wire import (
    FIXED_WIDTH,
    RESERVED,
    TAGS,
    join_properties,
    long_string,
    short_string,
)
from eventscope.backend.fieldtable import decode_table
from eventscope.backend.store.engine import create_engine
from eventscope.backend.store.models import events
from eventscope.web.app import create_app
from tests.conftest import AMQP_URL, Broker, Names, Running, eventually, make_settings
from tests.rawamqp import RawPublisher, timestamp

EXAMPLES = int(os.environ.get("ES_PROPERTY_EXAMPLES", "12"))
# Shrinking a failing batch costs minutes (every attempt goes through the broker and the app);
# the failure is reported as found unless ES_PROPERTY_SHRINK=1.
PHASES = tuple(p for p in Phase if os.environ.get("ES_PROPERTY_SHRINK") or p is not Phase.shrink)
MAX_BODY = 512 * 1024  # small enough that huge-ish bodies are stored truncated
OPERATOR, VIEWER = "op-token", "viewer-token"
ROOT = Path(__file__).parents[2]

# -- strategies ---------------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    '<div hx-get="/api/events" hx-trigger="load">',
    "{{7*7}}",
    "${7*7}",
    "\u202etxt.exe",
    "zero\u200bwidth",
    "nul\x00byte",
    "🎉",
    "'; DROP TABLE events; --",
]
MARKERS = [text for text in HOSTILE if text.startswith(("<", '"'))]  # must never appear raw
NOT_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80b", b"\xf8"]

hostile_bytes = st.sampled_from([h.encode() for h in HOSTILE])
not_utf8 = st.tuples(st.binary(max_size=20), st.sampled_from(NOT_UTF8), st.binary(max_size=20))
invalid_utf8 = not_utf8.map(lambda parts: b"".join(parts))
text_bytes = st.text(max_size=40).map(lambda t: t.encode("utf-8"))


def _short(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda raw: raw[:255])


short_text = _short(
    st.one_of(
        text_bytes,
        hostile_bytes,
        invalid_utf8,
        st.binary(max_size=255),
        st.just(b""),
        st.just(b"\xff" * 255),
    )
)
long_text = st.one_of(
    text_bytes, hostile_bytes, invalid_utf8, st.binary(max_size=300), st.just(b"x" * 3000)
)
u64 = st.one_of(
    st.sampled_from(
        [
            0,
            2**32 - 1,  # pamqp's last second
            2**32,  # pamqp's first millisecond
            253_402_300_799,  # 9999-12-31T23:59:59 in seconds
            253_402_300_800,  # year 10000
            1_764_000_000_123,  # milliseconds
            1_764_000_000_000_000_000,  # nanoseconds
            2**63 - 1,
            2**63,
            2**64 - 1,
        ]
    ),
    st.integers(0, 2**64 - 1),
)


def _scalar(tag: bytes) -> st.SearchStrategy[bytes]:
    """A tagged value of `tag` the broker accepts (finite floats only)."""
    if tag == b"f":
        floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
        return floats.map(lambda v: tag + struct.pack(">f", v))
    if tag == b"d":
        doubles = st.floats(allow_nan=False, allow_infinity=False)
        return doubles.map(lambda v: tag + struct.pack(">d", v))
    if tag == b"T":
        return u64.map(lambda v: tag + timestamp(v))
    if tag == b"S":
        return long_text.map(lambda v: tag + long_string(v))
    if tag == b"x":
        return st.binary(max_size=200).map(lambda v: tag + long_string(v))
    size = FIXED_WIDTH[tag]
    return st.binary(min_size=size, max_size=size).map(lambda v: tag + v)


SCALAR_TAGS = sorted(TAGS - {b"F", b"A"})
scalars = st.one_of([_scalar(tag) for tag in SCALAR_TAGS])
# Names the recorder reads (ids, types, dead-lettering) come often, with values of any type.
KNOWN_HEADERS = [
    b"x-death",
    b"x-first-death-exchange",
    b"x-first-death-reason",
    b"x-delivery-count",
    b"x-event-id",
    b"event_id",
    b"x-event-type",
    b"x-correlation-id",
    b"correlationId",
    b"x-causation-id",
    b"password",
    b"authorization",
]
header_names = _short(
    st.one_of(
        st.sampled_from(KNOWN_HEADERS),
        text_bytes,
        hostile_bytes,
        invalid_utf8,
        st.binary(max_size=64),
    )
)


def _framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _table_of(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return _framed(b"".join(short_string(name) + value for name, value in pairs))


def _containers(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    tables = st.lists(st.tuples(header_names, children), max_size=4).map(
        lambda pairs: b"F" + _table_of(pairs)
    )
    arrays = st.lists(children, max_size=4).map(lambda items: b"A" + _framed(b"".join(items)))
    return tables | arrays


values = st.recursive(scalars, _containers, max_leaves=12)


def _deep(depth: int) -> bytes:
    value = b"S" + long_string(b"<script>alert(1)</script>")
    for level in range(depth):
        value = b"F" + _table_of([(b"n", value)]) if level % 2 else b"A" + _framed(value)
    return value


# Nesting depths every batch carries, one per message (RabbitMQ accepts any depth that fits).
DEEP_HEADERS = [3, 40, 150, 300, 600, 2000]


@st.composite
def header_tables(draw: st.DrawFn, every_tag: bool, deep: int | None) -> bytes:
    """A header table; with `every_tag` one value of each tag; with `deep` a chain of tables
    and arrays nested that deep; never in sorted order by construction."""
    pairs = draw(st.lists(st.tuples(header_names, values), max_size=6))
    if every_tag:
        pairs += [(b"tag-" + tag, draw(_scalar(tag))) for tag in SCALAR_TAGS]
    if deep is not None:
        pairs.append((b"deep", _deep(deep)))
    return _table_of(draw(st.permutations(pairs)))


@st.composite
def raw_properties(draw: st.DrawFn, full: bool, deep: int | None) -> bytes:
    """Property bytes; with `full`, every property (and the reserved flag bit) is present;
    with `deep`, a header nested that deep."""
    options: dict[str, st.SearchStrategy[bytes]] = {
        "content_type": short_text
        | st.sampled_from([b"application/json", b"text/plain", b"application/x-python-serialize"]),
        "content_encoding": short_text | st.sampled_from([b"gzip", b"identity", b"utf-8"]),
        "delivery_mode": st.sampled_from([b"\x01", b"\x02"]),
        "priority": st.binary(min_size=1, max_size=1),
        "correlation_id": short_text,
        "reply_to": short_text,
        "expiration": st.integers(3_600_000, 2**31 - 1).map(lambda n: str(n).encode()),
        "message_id": short_text,
        "timestamp": u64.map(timestamp),
        "message_type": short_text,
        "user_id": st.just(b"guest"),  # the broker refuses any other (406)
        "app_id": short_text,
        "cluster_id": short_text,
    }
    chunks: dict[str, bytes] = {}
    for name, strategy in options.items():
        if full or draw(st.booleans()):
            value = draw(strategy)
            fixed = name in ("delivery_mode", "priority", "timestamp")
            chunks[name] = value if fixed else short_string(value)
    if full or deep is not None or draw(st.booleans()):
        chunks["headers"] = draw(header_tables(every_tag=full, deep=deep))
    if full or draw(st.integers(0, 9)) == 0:
        chunks[RESERVED] = b""
    return join_properties(chunks)


routing_keys = st.one_of(
    st.just(b""),
    st.just(b"k" * 255),
    st.just(b"\xff" * 255),
    _short(text_bytes),
    _short(hostile_bytes),
    _short(invalid_utf8),
    st.binary(max_size=255),
    st.sampled_from([b"order.created", b"dlq.order.created", b"#", b"*.x", b".."]),
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(HOSTILE),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(HOSTILE), children, max_size=4)
    ),
    max_leaves=20,
)


EDGE_TIMES: list[Any] = [
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999Z",
    "2026-02-30T00:00:00Z",
    -62_135_596_800,
    253_402_300_799_999,
    1e300,
    -1,
    2**64,
    10**30,
]


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _deep_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth if depth % 2 else b"[" * depth + b"]" * depth


BODIES: dict[str, st.SearchStrategy[bytes]] = {
    "empty": st.just(b""),
    "text": st.one_of(text_bytes, hostile_bytes, st.text(min_size=1).map(str.encode)),
    "binary": st.binary(min_size=1, max_size=2000),
    "json": st.one_of(
        json_values.map(_json),
        st.fixed_dictionaries(
            {"id": json_values, "type": st.sampled_from(HOSTILE), "data": json_values},
            optional={
                "eventType": json_values,
                "correlationId": st.sampled_from(HOSTILE) | json_values,
                "causationId": json_values,
                "metadata": st.fixed_dictionaries(
                    {}, optional={"correlationId": json_values, "timestamp": json_values}
                ),
                "aggregateType": json_values,
                "aggregateVersion": json_values,
                "originalEvent": json_values,
                "timestamp": st.integers() | st.text(max_size=30) | st.sampled_from(EDGE_TIMES),
                "aggregateId": st.text(max_size=20),
                "version": st.integers(),
            },
        ).map(_json),
    ),
    "deep json": st.one_of(
        st.integers(1, 1100), st.sampled_from([1023, 1024, 1025, 10_000, 100_000])
    ).map(_deep_json),
    "invalid utf-8": st.tuples(st.text(max_size=30), invalid_utf8).map(
        lambda parts: parts[0].encode() + parts[1]
    ),
    "nan json": st.sampled_from(
        [
            b'{"total": NaN, "max": Infinity, "min": -Infinity}',
            b'{"s": "\\ud800", "n": "\\u0000", "big": 1' + b"0" * 5000 + b"}",
            b"NaN",
        ]
    ),
    "huge-ish": st.tuples(
        st.integers(200_000, 700_000),  # past the page's preview and, sometimes, MAX_BODY
        st.sampled_from([h.encode() + b" " for h in HOSTILE] + [b'{"k": [1, 2]},', b"\xff\x00"]),
    ).map(lambda spec: spec[1] * (spec[0] // len(spec[1]))),
}


@dataclass(frozen=True)
class Message:
    kind: str
    routing_key: bytes
    raw_properties: bytes
    body: bytes

    @property
    def identity(self) -> tuple[bytes, bytes, bytes]:
        return (self.routing_key, self.raw_properties, self.body[:MAX_BODY])


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    """One message per body kind (the first with every property, the first few with deep
    headers), a few of any kind, and sometimes one of them again."""
    kinds = list(BODIES) + draw(st.lists(st.sampled_from(list(BODIES)), max_size=3))
    batch = []
    for i, kind in enumerate(kinds):
        deep = DEEP_HEADERS[i] if i < len(DEEP_HEADERS) else None
        props = draw(raw_properties(full=i == 0, deep=deep))
        batch.append(Message(kind, draw(routing_keys), props, draw(BODIES[kind])))
    if draw(st.booleans()):  # a duplicate publish: a second observation, not a lost one
        batch.append(draw(st.sampled_from(batch)))
    return batch


# -- checks -------------------------------------------------------------------------------------


def _template_tags() -> frozenset[str]:
    """Elements the app writes: the templates' and those of the modules that build markup
    (`web/display.py`: <bdi> isolation; `web/json_tree.py`: the foldable body)."""
    markup = [p for p in (ROOT / "web").glob("*.py") if "Markup(" in p.read_text()]
    assert {p.name for p in markup} >= {"display.py", "json_tree.py"}
    sources = [*(ROOT / "templates").glob("*.html"), *markup]
    text = "".join(p.read_text() for p in sources)
    return frozenset(t.lower() for t in re.findall(r"<([a-zA-Z][a-zA-Z0-9-]*)", text))


TEMPLATE_TAGS = _template_tags()


class _Audit(HTMLParser):
    """Every element and script body of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TEMPLATE_TAGS:
            self.problems.append(f"<{tag}> is no element of the templates")
        for name, _ in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…> handler attribute")
        if tag == "script":
            src = dict(attrs).get("src") or ""
            if not src.startswith("/static/"):
                self.problems.append(f"<script src={src!r}>")
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append(f"inline script {data[:60]!r}")


def assert_safe_html(text: str, where: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"{where}: {marker!r} is in the HTML unescaped"
    audit = _Audit()
    audit.feed(text)
    audit.close()
    assert not audit.problems, f"{where}: {audit.problems[:5]}"


def strict_json(text: str, where: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{where}: {constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def stored_routing_key(row: dict[str, Any]) -> bytes:
    """The routing key's wire bytes: the original when the column holds a display form."""
    originals = decode_table(row["originals"]) if row.get("originals") else {}
    original = originals.get("routing_key", row["routing_key"])
    if isinstance(original, bytes | bytearray):
        return bytes(original)
    return str(original).encode("utf-8", "surrogatepass")


# -- the test -----------------------------------------------------------------------------------


@dataclass
class Space:
    database_url: str
    names: Names
    broker: Broker
    recorder: Running
    publisher: RawPublisher
    client: AsyncTestClient[Litestar]
    published: int = 0


@pytest.fixture
async def space(
    database_url: str, names: Names, broker: Broker, start_recorder: Any
) -> AsyncIterator[Space]:
    """One recorder, publisher and app for all examples of a database (not one per message)."""
    config = make_settings(
        database_url, names, token=OPERATOR, viewer_tokens=(VIEWER,), max_body_bytes=MAX_BODY
    )
    run = await start_recorder(config)
    publisher = RawPublisher(AMQP_URL)
    app = create_app(config, run_recorder=False, migrate=False)
    try:
        async with AsyncTestClient(app) as client:
            yield Space(database_url, names, broker, run, publisher, client)
    finally:
        await publisher.close()


async def _rows_after(database_url: str, last_id: int) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(events).where(events.c.id > last_id).order_by(events.c.id)
            )
            return [dict(r._mapping) for r in result]
    finally:
        await engine.dispose()


async def _last_id(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.max(events.c.id))) or 0)
    finally:
        await engine.dispose()


AUTH = {
    "operator": {"Authorization": f"Bearer {OPERATOR}"},
    "viewer": {"Authorization": f"Bearer {VIEWER}"},
}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(batch=batches())
async def test_every_accepted_message_is_stored_once_and_every_page_shows_it_safely(
    space: Space, batch: list[Message]
) -> None:
    last_id = await _last_id(space.database_url)
    accepted: list[Message] = []
    for message in batch:
        ok = await space.publisher.publish(
            space.names.exchange, message.routing_key, message.body, message.raw_properties
        )
        if ok:
            accepted.append(message)
        else:
            event(f"refused by the broker: {message.kind}")
            note(f"refused: {message!r:.300}")
    space.published += len(accepted)
    status = space.recorder.recorder.status
    await eventually(lambda: status.stored >= space.published, 60, "the batch stored")
    await eventually(lambda: status.holding == 0, 10, "nothing held uncommitted")

    rows = await _rows_after(space.database_url, last_id)
    got = Counter(
        (stored_routing_key(r), bytes(r["raw_properties"]), bytes(r["body"])) for r in rows
    )
    assert got == Counter(m.identity for m in accepted), "each accepted message stored once"
    sent = {m.identity: m for m in accepted}
    for row in rows:
        if row["problem"] is not None:
            event(f"stored with a problem: {row['problem'][:60]}")
        message = sent[(stored_routing_key(row), bytes(row["raw_properties"]), bytes(row["body"]))]
        assert row["body_size"] == len(message.body)
        assert bool(row["body_truncated"]) == (len(message.body) > MAX_BODY)

    client = space.client
    for role, auth in AUTH.items():
        for row in rows:
            where = (
                f"{role} event {row['id']} (routing key {row['routing_key'][:40]!r}, "
                f"{len(row['headers'])} bytes of typed headers, problem {row['problem']!r})"
            )
            page = await client.get(f"/events/{row['id']}", headers=auth)
            assert page.status_code == 200, f"{where}: {page.status_code} {page.text[:300]}"
            assert_safe_html(page.text, where)
            api = await client.get(f"/api/events/{row['id']}", headers=auth)
            assert api.status_code == 200, f"{where}: API {api.status_code} {api.text[:300]}"
            assert api.headers["content-type"].startswith("application/json"), where
            detail = strict_json(api.text, where)
            assert detail["id"] == row["id"]
            if role == "operator":  # shown as stored (viewers get masked values)
                assert base64.b64decode(detail["body_base64"]) == bytes(row["body"]), where
                assert detail["headers_typed"] == json.loads(row["headers"]), where
                assert detail["properties_typed"] == json.loads(row["properties"]), where
        timeline = await client.get("/", headers=auth)
        assert timeline.status_code == 200, f"{role} timeline: {timeline.text[:300]}"
        assert_safe_html(timeline.text, f"{role} timeline")
        for row in rows:
            assert f'href="/events/{row["id"]}"' in timeline.text, f"{role}: row {row['id']} shown"
        listing = await client.get("/api/events", params={"limit": 1000}, headers=auth)
        assert listing.status_code == 200, f"{role} list: {listing.text[:300]}"
        ids = {item["id"] for item in strict_json(listing.text, f"{role} list")["items"]}
        assert {row["id"] for row in rows} <= ids


# -- what the property test found: the minimal examples ----------------------------------------


async def _record_one(
    database_url: str, names: Names, start_recorder: Any, raw: bytes
) -> tuple[dict[str, Any], AsyncTestClient[Litestar]]:
    config = make_settings(database_url, names, token=OPERATOR, viewer_tokens=(VIEWER,))
    run = await start_recorder(config)
    publisher = RawPublisher(AMQP_URL)
    try:
        assert await publisher.publish(names.exchange, "deep", b"{}", raw), "the broker accepts it"
    finally:
        await publisher.close()
    await eventually(lambda: run.recorder.status.stored >= 1, 20, "the message stored")
    await run.halt()
    (row,) = await _rows_after(database_url, 0)
    assert bytes(row["raw_properties"]) == raw
    return row, AsyncTestClient(create_app(config, run_recorder=False, migrate=False))


async def test_a_header_nested_250_deep_is_shown_on_the_detail_page(
    database_url: str, names: Names, broker: Broker, start_recorder: Any
) -> None:
    """Found by the property test: the page rendered nested header rows one Jinja macro call
    per level, and ~250 levels (RabbitMQ accepts far more) was a RecursionError and a 500."""
    raw = join_properties(
        {"message_id": short_string(b"m-1"), "headers": _table_of([(b"deep", _deep(250))])}
    )
    row, client = await _record_one(database_url, names, start_recorder, raw)
    assert row["problem"] is None, "the recorder decoded it"
    async with client:
        for role, auth in AUTH.items():
            api = await client.get(f"/api/events/{row['id']}", headers=auth)
            assert api.status_code == 200, role
            page = await client.get(f"/events/{row['id']}", headers=auth)
            assert page.status_code == 200, f"{role}: {page.text[:200]}"
            assert_safe_html(page.text, role)


async def test_a_header_nested_600_deep_leaves_the_other_properties_readable(
    database_url: str, names: Names, broker: Broker, start_recorder: Any
) -> None:
    """Found by the property test: the lenient decoder keeps tables nested deeper than
    `MAX_DEPTH` undecoded (`TooDeep`), so the rest of the content header stays readable."""
    raw = join_properties(
        {"message_id": short_string(b"m-1"), "headers": _table_of([(b"deep", _deep(600))])}
    )
    row, _ = await _record_one(database_url, names, start_recorder, raw)
    assert row["message_id"] == "m-1", row["problem"]

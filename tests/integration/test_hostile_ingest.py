"""The hostile corpus through the real broker into both databases: stored raw, ingest goes on."""

from __future__ import annotations

import datetime as dt
import gzip
import pickle
from decimal import Decimal
from typing import Any

from litestar.testing import AsyncTestClient

from eventscope.backend.fieldtable import decode_table
from eventscope.web.app import create_app
from tests.conftest import Broker, Names, eventually, make_settings
from tests.integration.test_ingest import seed_event, stored_rows

SIXTEEN_MIB = 16 * 1024 * 1024

ALL_HEADER_TYPES: dict[str, Any] = {
    "text": "plain",
    "int": 42,
    "big": 2**62,
    "negative": -7,
    "bool": True,
    "float": 1.5,
    "decimal": Decimal("3.14"),
    "timestamp": dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC),
    "table": {"nested": {"deeper": "yes"}, "n": 1},
    "array": [1, "two", {"three": 3}],
    "bytes": bytearray(b"\x00\xff\x10"),
    "void": None,
    "x-correlation-id": "req_from_header",
}

CORPUS: list[tuple[str, bytes, dict[str, Any]]] = [
    ("plain.text", b"hello, not json", {}),
    ("xml", b"<?xml version='1.0'?><order id='1'/>", {"content_type": "application/xml"}),
    ("binary.nul", b"\x00\x01\x02binary\x00", {}),
    ("invalid.utf8", b"\xff\xfe\xfa not utf-8 \xc3\x28", {}),
    ("deep.nesting", b"[" * 100_000 + b"]" * 100_000, {}),
    ("nan", b'{"total": NaN, "max": Infinity}', {"content_type": "application/json"}),
    ("surrogate", b'{"name": "\\ud800", "nul": "\\u0000"}', {}),
    (
        "xss.<script>alert(1)</script>",
        b'{"html": "<script>alert(1)</script>"}',
        {"headers": {"h": '"><img src=x onerror=alert(1)>'}},
    ),
    ("template.{{7*7}}", b"${7*7} {{7*7}}", {"correlation_id": "{{7*7}}"}),
    ("bidi.\u202etxt.exe\u200b.🎉", b"{}", {"message_id": "id\u202e"}),
    ("nul.in\x00key", b"x", {"headers": {"nul": "a\x00b"}, "correlation_id": "c\x00d"}),
    ("no.props", b'{"id": "evt_no_props"}', {}),
    ("all.header.types", seed_event(1), {"headers": ALL_HEADER_TYPES}),
    ("pickle", pickle.dumps({"evil": 1}), {"content_type": "application/x-python-serialize"}),
    (
        "gzip",
        gzip.compress(b'{"a": 1}'),
        {"content_encoding": "gzip", "content_type": "application/json"},
    ),
    ("huge.16mib", b"a" * SIXTEEN_MIB, {}),
]


async def test_hostile_corpus_is_stored_raw_and_every_detail_page_renders(
    database_url: str, names: Names, broker: Broker, start_recorder
) -> None:
    settings = make_settings(database_url, names, token="t")
    run = await start_recorder(settings)
    for routing_key, body, props in CORPUS:
        await broker.publish(routing_key, body, **props)
    await broker.publish("after.the.corpus", seed_event(2))
    await eventually(lambda: run.recorder.status.stored >= len(CORPUS) + 1, 60, "the corpus stored")
    await run.halt()

    rows = await stored_rows(database_url)
    assert [bytes(r["body"]) for r in rows] == [body for _, body, _ in CORPUS] + [seed_event(2)]
    by_key = {r["routing_key"]: r for r in rows}
    assert by_key["nul.in\u2400key"]["correlation_id"] == "c\u2400d"
    assert by_key["deep.nesting"]["body_kind"] == "text"
    assert by_key["invalid.utf8"]["body_kind"] == "binary"
    assert by_key["gzip"]["body_kind"] == "binary"
    assert by_key["huge.16mib"]["body_size"] == SIXTEEN_MIB
    assert by_key["all.header.types"]["correlation_id"] == "req_1"  # body wins over header
    headers = decode_table(by_key["all.header.types"]["headers"])
    assert headers["decimal"] == Decimal("3.14")
    assert headers["bytes"] == bytearray(b"\x00\xff\x10")
    assert headers["table"] == {"nested": {"deeper": "yes"}, "n": 1}
    assert headers["timestamp"] == dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)

    app = create_app(settings, run_recorder=False, migrate=False)
    async with AsyncTestClient(app) as client:
        auth = {"Authorization": "Bearer t"}
        for row in rows:
            page = await client.get(f"/events/{row['id']}", headers=auth)
            assert page.status_code == 200, row["routing_key"]
            assert "<script>alert(1)</script>" not in page.text
            api = await client.get(f"/api/events/{row['id']}", headers=auth)
            assert api.status_code == 200
        timeline = await client.get("/", headers=auth)
        assert timeline.status_code == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in timeline.text
        assert "U+202E" in timeline.text

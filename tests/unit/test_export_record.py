"""Export records (backend/export.py) and reading them back (backend/export_read.py), pure:
any body and any typed header table survive the trip through an export, in both formats."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventscope.backend.amqp_lenient import UndecodedText
from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.export import compact_json, dump, encoded, filename, record
from eventscope.backend.export_read import body_bytes, message, read_records
from eventscope.backend.fieldtable import decode_table
from eventscope.backend.redaction import Redactor

NOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
header_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text()
    | st.binary(max_size=20).map(bytearray),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


def row_of(body: bytes, headers: dict[str, Any] | None = None, key: str = "k") -> dict[str, Any]:
    delivery = Delivery("ex", key, False, {"message_id": "m"}, headers, body, NOW, b"\x00\x80")
    row = to_row(delivery, 1 << 20)
    return {**row, "id": 1, "commit_seq": 1, "observation": 1}


def through_export(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    (item,) = read_records(encoded(row, mask) + b"\n")
    return item


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_body_bytes_come_back_exactly(body: bytes) -> None:
    got = message(through_export(row_of(body)))
    assert got.body == body
    assert got.exact


@settings(max_examples=200)
@given(json_values, st.sampled_from([(",", ":"), (", ", ": ")]), st.booleans())
def test_json_bodies_come_back_exactly_and_parsed_when_compact(
    document: Any, separators: tuple[str, str], ascii_only: bool
) -> None:
    body = json.dumps(document, separators=separators, ensure_ascii=ascii_only).encode()
    item = through_export(row_of(body))
    assert body_bytes(item) == body
    if item["body_encoding"] == "json":
        assert item["body"] == document


def test_a_compact_json_body_is_exported_parsed() -> None:
    item = through_export(row_of(b'{"id":"evt_1","n":[1,2.5,null]}'))
    assert item["body_encoding"] == "json"
    assert item["body"] == {"id": "evt_1", "n": [1, 2.5, None]}
    assert compact_json(b'{"id": 1}') == (False, {"id": 1})


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=8), header_values, max_size=5))
def test_typed_headers_come_back_as_the_stored_values(headers: dict[str, Any]) -> None:
    row = row_of(b"x", headers)
    got = message(through_export(row))
    assert got.headers == decode_table(row["headers"])


def test_text_with_lone_surrogates_in_a_header_still_makes_valid_json() -> None:
    row = row_of(b"x", {"h": "a\ud800b"})
    line = dump(record(row))
    assert line.isascii()
    assert message(json.loads(line)).headers == {"h": "a\ud800b"}


def test_a_routing_key_that_is_not_utf8_comes_back_as_its_bytes() -> None:
    key = UndecodedText(b"k\xff")  # what the lenient decoder makes of a non-UTF-8 key
    got = message(through_export(row_of(b"x", key=key)))
    assert got.routing_key == b"k\xff"


def test_a_masked_record_is_never_exact() -> None:
    item = through_export(row_of(b'{"password":"hunter2"}'), Redactor())
    assert item["masked"] is True and item["raw_properties"] is None
    assert "hunter2" not in json.dumps(item)
    assert not message(item).exact


def test_the_file_name_is_sortable_and_needs_no_quoting() -> None:
    assert filename("ndjson", NOW) == "eventscope-events-20261201T100000Z.ndjson"
    assert filename("json", NOW).endswith(".json")

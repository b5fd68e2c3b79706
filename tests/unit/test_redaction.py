"""Viewers see secrets masked; the masking never touches what it was not asked to."""

from __future__ import annotations

import json

from eventscope.backend.redaction import MASK, Redactor, luhn_ok

VISA_TEST = "4111 1111 1111 1111"


def test_json_fields_named_like_secrets_are_masked_at_any_depth() -> None:
    doc = {
        "user": {"name": "ann", "userPassword": "hunter2", "api_token": "abc"},
        "items": [{"db-secret": "s3", "sku": "A1"}],
        "Authorization": "Bearer x",
    }
    masked = Redactor().data(doc)
    assert masked["user"] == {"name": "ann", "userPassword": MASK, "api_token": MASK}
    assert masked["items"] == [{"db-secret": MASK, "sku": "A1"}]
    assert masked["Authorization"] == MASK
    assert doc["user"]["userPassword"] == "hunter2", "the original is never modified"


def test_deeply_nested_document_is_masked_without_recursion_error() -> None:
    doc: object = {"password": "p"}
    for _ in range(5000):
        doc = {"next": doc}
    masked = Redactor().data(doc)
    while "next" in masked:
        masked = masked["next"]
    assert masked == {"password": MASK}


def test_card_numbers_are_masked_only_when_they_pass_luhn() -> None:
    r = Redactor()
    assert r.text(f"card {VISA_TEST} ok") == f"card {MASK}1111 ok"
    assert r.text("order 1234567890123456") == "order 1234567890123456"
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert r.data({"note": "pay with 4111111111111111"}) == {"note": f"pay with {MASK}1111"}


def test_key_value_pairs_in_plain_text_are_masked() -> None:
    text = 'login user=ann password=hunter2&token=abc "secret": "xyz" other=1'
    masked = Redactor().text(text)
    assert "hunter2" not in masked and "abc" not in masked and "xyz" not in masked
    assert "user=ann" in masked and "other=1" in masked


def test_typed_headers_are_masked_by_name_including_nested_tables() -> None:
    table = {
        "authorization": ["s", "Bearer abc"],
        "x-trace": ["s", "t-1"],
        "ctx": ["F", {"session_token": ["s", "zzz"], "n": ["i", 1]}],
        "list": ["A", [["s", VISA_TEST]]],
    }
    masked = Redactor().tagged(table)
    assert masked["authorization"] == ["s", MASK]
    assert masked["x-trace"] == ["s", "t-1"]
    assert masked["ctx"] == ["F", {"session_token": ["s", MASK], "n": ["i", 1]}]
    assert masked["list"] == ["A", [["s", f"{MASK}1111"]]]
    json.dumps(masked)


def test_configured_fields_replace_the_defaults() -> None:
    r = Redactor(("ssn",))
    assert r.data({"ssn": "123", "password": "p"}) == {"ssn": MASK, "password": "p"}

"""One stored event as the API and the detail page present it (one shape, two renderings).

Every function takes `mask`: a Redactor for viewers (secrets masked, no raw bytes), or None for
operators (everything as stored).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from eventscope.backend.envelope import json_preview
from eventscope.backend.fieldtable import TYPE_NAMES, plain
from eventscope.backend.redaction import Redactor
from eventscope.backend.store.models import SUMMARY_COLUMNS
from eventscope.web.display import cursor, hexdump, iso, safe_text

PREVIEW_BYTES = 256 * 1024
HEX_BYTES = 16 * 1024
# The list view's fields: the summary columns, times rendered separately as ISO text.
SUMMARY_FIELDS = tuple(
    c.name for c in SUMMARY_COLUMNS if c.name not in ("received_at", "occurred_at", "commit_seq")
)


MASKED_SUMMARY_FIELDS = (
    "routing_key",
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_id",
    "message_id",
)


def masked_row(row: dict[str, Any], mask: Redactor | None) -> dict[str, Any]:
    """A row whose identifying text has card numbers and secret pairs masked (viewers)."""
    if mask is None:
        return row
    out = dict(row)
    for name in MASKED_SUMMARY_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = mask.text(out[name])
    return out


def summary(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """The list view of an event (no body): what the timeline rows show."""
    row = masked_row(row, mask)
    out = {name: row.get(name) for name in SUMMARY_FIELDS}
    out["received_at"] = iso(row.get("received_at"))
    out["occurred_at"] = iso(row["occurred_at"]) if row.get("occurred_at") else None
    out["duplicate"] = (row.get("observation") or 1) > 1
    out["cursor"] = cursor(row)
    return out


def _tagged_table(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def originals_table(text: str | None) -> dict[str, Any]:
    """The typed originals of values altered to fit a column. Rows stored before revision 0003
    hold plain strings there; they are read as text."""
    table = _tagged_table(text) if text else {}
    return {
        name: value
        if isinstance(value, list) and len(value) == 2 and value[0] in TYPE_NAMES
        else ["s", str(value)]
        for name, value in table.items()
    }


def body_text(row: dict[str, Any]) -> str | None:
    if row["body_kind"] not in ("json", "text"):
        return None
    return safe_text(bytes(row["body"]).decode("utf-8", "replace"))


def strict_json(body: bytes) -> Any:
    """The body as JSON data for API clients, or None when it is not strict JSON."""

    def reject(constant: str) -> Any:
        raise ValueError(constant)

    try:
        data = json.loads(body, parse_constant=reject)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be sent
    except (ValueError, RecursionError, UnicodeEncodeError):
        return None
    return data


def tables(row: dict[str, Any], mask: Redactor | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(properties, headers) as typed tables, masked for viewers."""
    props, headers = _tagged_table(row["properties"]), _tagged_table(row["headers"])
    if mask is not None:
        props, headers = mask.tagged(props), mask.tagged(headers)
    return props, headers


def masked_body(row: dict[str, Any], mask: Redactor) -> tuple[bytes, Any]:
    """A viewer's copy of the body: (display bytes, parsed JSON or None), secrets masked."""
    body = bytes(row["body"])
    if row["body_kind"] == "json":
        data = strict_json(body)
        if data is not None:
            masked = mask.data(data)
            return json.dumps(masked, ensure_ascii=False).encode("utf-8"), masked
    text = body.decode("utf-8", "surrogateescape")  # undecodable bytes survive the round trip
    return mask.text(text).encode("utf-8", "surrogateescape"), None


def detail(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """Everything recorded about one event, for the API. Viewers get masked values and no raw
    bytes (`body_base64` is null and `redacted` true)."""
    props, headers = tables(row, mask)
    out = summary(row, mask)
    if mask is None:
        body = bytes(row["body"])
        body_json = strict_json(body) if row["body_kind"] == "json" else None
        text = body_text(row)
        raw: str | None = base64.b64encode(body).decode("ascii")
    else:
        shown, body_json = masked_body(row, mask)
        text = body_text({**row, "body": shown})
        raw = None
    out.update(
        properties={k: plain(v) for k, v in props.items()},
        properties_typed=props,
        headers={k: plain(v) for k, v in headers.items()},
        headers_typed=headers,
        body_base64=raw,
        body_text=text,
        body_json=body_json,
        redacted=mask is not None,
    )
    return out


def field_rows(tagged: dict[str, Any]) -> list[dict[str, Any]]:
    """Header/property table rows for the template: name, type, value or nested rows."""
    rows = []
    for name, (tag, value) in tagged.items():
        rows.append(_field(name, tag, value))
    return rows


def _field(name: str, tag: str, value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": TYPE_NAMES.get(tag, tag), "tag": tag}
    if tag == "F":
        entry["children"] = [_field(k, t, v) for k, (t, v) in value.items()]
    elif tag == "A":
        entry["children"] = [_field(f"[{i}]", t, v) for i, (t, v) in enumerate(value)]
    elif tag in ("x", "b"):
        raw = base64.b64decode(value)
        entry["value"] = raw.decode("utf-8", "backslashreplace")
        entry["note"] = f"{len(raw)} bytes"
    elif tag == "V":
        entry["value"] = None
    elif tag == "t":
        entry["value"] = "true" if value else "false"
    else:
        entry["value"] = value
    return entry


def page_context(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """What the detail template shows: tables, and the body as JSON, text or hex (capped)."""
    body = bytes(row["body"]) if mask is None else masked_body(row, mask)[0]
    shown = body[:PREVIEW_BYTES]
    preview_cut = len(body) > PREVIEW_BYTES
    pretty = json_preview(body, row["body_kind"]) if not preview_cut else None
    text = None
    if pretty is None and row["body_kind"] in ("json", "text"):
        text = safe_text(shown.decode("utf-8", "replace"))
    props, headers = tables(row, mask)
    originals = originals_table(row.get("originals"))
    if mask is not None:
        originals = mask.tagged(originals)
    return {
        "event": masked_row(row, mask),
        "redacted": mask is not None,
        "properties": field_rows(props),
        "headers": field_rows(headers),
        "pretty": pretty,
        "body_text": text,
        "hex": hexdump(body, HEX_BYTES) if pretty is None and text is None else None,
        "hex_cut": len(body) > HEX_BYTES,
        "preview_cut": preview_cut,
        "preview_bytes": PREVIEW_BYTES,
        "originals": field_rows(originals),
        "occurred_original": field_rows({"": originals["occurred_at"]})[0]
        if "occurred_at" in originals
        else None,
        "raw_properties": bytes(row["raw_properties"]) if row.get("raw_properties") else None,
    }

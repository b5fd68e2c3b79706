"""One stored event as the API and the detail page present it (one shape, two renderings)."""

from __future__ import annotations

import base64
import json
from typing import Any

from backend.envelope import json_preview
from backend.fieldtable import TYPE_NAMES, plain
from web.display import hexdump, iso, safe_text

PREVIEW_BYTES = 256 * 1024
HEX_BYTES = 16 * 1024
SUMMARY_FIELDS = (
    "id",
    "exchange",
    "routing_key",
    "redelivered",
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "message_id",
    "content_type",
    "dead_letter",
    "body_kind",
    "body_size",
    "body_truncated",
    "observation",
)


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The list view of an event (no body): what the timeline rows show."""
    out = {name: row.get(name) for name in SUMMARY_FIELDS}
    out["received_at"] = iso(row.get("received_at"))
    out["occurred_at"] = iso(row["occurred_at"]) if row.get("occurred_at") else None
    out["duplicate"] = (row.get("observation") or 1) > 1
    return out


def _tagged_table(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


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


def detail(row: dict[str, Any]) -> dict[str, Any]:
    """Everything recorded about one event, for the API (raw body as base64)."""
    props = _tagged_table(row["properties"])
    headers = _tagged_table(row["headers"])
    body = bytes(row["body"])
    out = summary(row)
    out.update(
        properties={k: plain(v) for k, v in props.items()},
        properties_typed=props,
        headers={k: plain(v) for k, v in headers.items()},
        headers_typed=headers,
        body_base64=base64.b64encode(body).decode("ascii"),
        body_text=body_text(row),
        body_json=strict_json(body) if row["body_kind"] == "json" else None,
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


def page_context(row: dict[str, Any]) -> dict[str, Any]:
    """What the detail template shows: tables, and the body as JSON, text or hex (capped)."""
    body = bytes(row["body"])
    shown = body[:PREVIEW_BYTES]
    preview_cut = len(body) > PREVIEW_BYTES
    pretty = json_preview(body, row["body_kind"]) if not preview_cut else None
    text = None
    if pretty is None and row["body_kind"] in ("json", "text"):
        text = safe_text(shown.decode("utf-8", "replace"))
    return {
        "event": row,
        "summary": summary(row),
        "properties": field_rows(_tagged_table(row["properties"])),
        "headers": field_rows(_tagged_table(row["headers"])),
        "pretty": pretty,
        "body_text": text,
        "hex": hexdump(body, HEX_BYTES) if pretty is None and text is None else None,
        "hex_cut": len(body) > HEX_BYTES,
        "preview_cut": preview_cut,
        "preview_bytes": PREVIEW_BYTES,
        "originals": _tagged_table(row["originals"]) if row.get("originals") else {},
    }

"""One stored event as the API and the detail page present it (one shape, two renderings).

Every function takes `mask`: a Redactor for viewers (secrets masked, no raw bytes), or None for
operators (everything as stored).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from eventscope.backend.envelope import json_preview
from eventscope.backend.fieldtable import TYPE_NAMES
from eventscope.backend.redaction import MASK, Redactor
from eventscope.backend.store.models import KEY_COLUMNS, SUMMARY_COLUMNS
from eventscope.web.display import cursor, hexdump, iso, safe_text

PREVIEW_BYTES = 256 * 1024
HEX_BYTES = 16 * 1024
VIEWER_BYTES = PREVIEW_BYTES  # the most of a body masked for (and shown to) a viewer
OFF_LOOP_BYTES = 32 * 1024  # bodies larger than this are prepared in a worker thread
_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="eventscope-view")
T = TypeVar("T")
# The list view's fields: the summary columns, times rendered separately as ISO text.
SUMMARY_FIELDS = tuple(
    c.name
    for c in SUMMARY_COLUMNS
    if c.name not in ("received_at", "occurred_at", "commit_seq", *KEY_COLUMNS)
)


MASKED_SUMMARY_FIELDS = (
    "source",
    "exchange",
    "routing_key",
    "event_id",
    "event_type",
    "correlation_id",
    "causation_id",
    "aggregate_type",
    "aggregate_id",
    "message_id",
    "content_type",
    "problem",
)


def masked_row(row: dict[str, Any], mask: Redactor | None) -> dict[str, Any]:
    """A row whose text columns have card numbers and secret pairs masked (viewers); a column
    whose own name is a secret one (a configured word such as `message_id`) is masked whole."""
    if mask is None:
        return row
    out = dict(row)
    for name in MASKED_SUMMARY_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = MASK if mask.sensitive(name) else mask.text(out[name])
    return out


def shown(column: str, value: str | None, mask: Redactor | None) -> str | None:
    """One text column's value as this reader may see it: masked whole when the column's name
    is a secret word, else with the secrets inside it masked (as `masked_row` does)."""
    if value is None or mask is None:
        return value
    return MASK if mask.sensitive(column) else mask.text(value)


def hidden_from(mask: Redactor | None, column: str, value: str) -> bool:
    """A viewer sees `value` of `column` otherwise than as stored: it cannot be looked up by
    it (the answer would tell what the mask hides)."""
    return mask is not None and (
        mask.sensitive(column) or mask.text(value) != value or MASK in value
    )


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
    except (ValueError, RecursionError):
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


def parse_json(body: bytes) -> tuple[bool, Any]:
    """(True, data) when Python's json reads the body — NaN and Infinity included, as the JSON
    view shows them —, else (False, None): invalid, nested too deep, numbers too long."""
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


def strict(data: Any) -> bool:
    """Whether parsed data is strict JSON an API client can read: no NaN or Infinity, no lone
    surrogates, not nested too deep to encode."""
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return False
    return True


def strict_json(body: bytes) -> Any:
    """The body as JSON data for API clients, or None when it is not strict JSON."""
    parsed, data = parse_json(body)
    return data if parsed and strict(data) else None


def tables(row: dict[str, Any], mask: Redactor | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(properties, headers) as typed tables, masked for viewers."""
    props, headers = _tagged_table(row["properties"]), _tagged_table(row["headers"])
    if mask is not None:
        props, headers = mask.tagged(props), mask.tagged(headers)
    return props, headers


@dataclass(frozen=True)
class ViewerBody:
    """A body as a viewer sees it, secrets masked.

    A JSON body Python's json reads is masked on its structure and rendered from it (`data`
    set, `text` the compact rendering): whatever the text looked like — NaN, escaped keys,
    arrays under secret keys —, the masks land on values. Anything else is masked as text
    (`raw`, secret pairs and card numbers), at most its first VIEWER_BYTES (`cut`)."""

    raw: bytes
    text: str | None
    data: Any = None
    parsed: bool = False
    cut: bool = False


def viewer_body(row: dict[str, Any], mask: Redactor) -> ViewerBody:
    body = bytes(row["body"])
    cut = len(body) > VIEWER_BYTES
    if row["body_kind"] == "json" and not cut:
        parsed, data = parse_json(body)
        if parsed:
            masked = mask.data(data)
            try:
                rendered = json.dumps(masked, ensure_ascii=False)
            except RecursionError:
                pass  # parsed, but too deep to render: shown as masked text below
            else:
                return ViewerBody(b"", safe_text(rendered), masked, parsed=True)
    shown = mask.raw(body[:VIEWER_BYTES])
    text = None
    if row["body_kind"] in ("json", "text"):
        text = safe_text(shown.decode("utf-8", "replace"))
    return ViewerBody(shown, text, cut=cut)


def masked_body(row: dict[str, Any], mask: Redactor) -> tuple[bytes, Any]:
    """A viewer's copy of the body: (display bytes, masked JSON data or None)."""
    shown = viewer_body(row, mask)
    if shown.parsed:
        return (shown.text or "").encode("utf-8"), shown.data
    return shown.raw, None


def detail(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """Everything recorded about one event, for the API. Viewers get masked values and no raw
    bytes (`body_base64` is null and `redacted` true); a viewer's body longer than
    VIEWER_BYTES is masked and shown up to there (`body_cut` true)."""
    props, headers = tables(row, mask)
    out = summary(row, mask)
    cut = False
    if mask is None:
        body = bytes(row["body"])
        body_json = strict_json(body) if row["body_kind"] == "json" else None
        text = body_text(row)
        raw: str | None = base64.b64encode(body).decode("ascii")
    else:
        shown = viewer_body(row, mask)
        body_json = shown.data if shown.parsed and strict(shown.data) else None
        text, raw, cut = shown.text, None, shown.cut
    out.update(
        properties={k: plain_data(v) for k, v in props.items()},
        properties_typed=props,
        headers={k: plain_data(v) for k, v in headers.items()},
        headers_typed=headers,
        body_base64=raw,
        body_text=text,
        body_json=body_json,
        body_cut=cut,
        redacted=mask is not None,
    )
    return out


MAX_NESTING = 16  # table levels the page shows as nested rows; deeper ones as JSON text


def plain_data(tagged: list[Any]) -> Any:
    """`fieldtable.plain`, iteratively: a tagged value as plain JSON data, any depth."""
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, list[Any]]] = [(root, 0, tagged)]
    while stack:
        container, key, (tag, value) = stack.pop()
        if tag == "F":
            container[key] = {}
            stack.extend((container[key], k, v) for k, v in value.items())
        elif tag == "A":
            container[key] = [None] * len(value)
            stack.extend((container[key], i, v) for i, v in enumerate(value))
        else:
            container[key] = value
    return root[0]


def _as_json(tagged: list[Any]) -> str:
    try:
        return json.dumps(plain_data(tagged), ensure_ascii=False)
    except RecursionError:
        return "(nested too deep to show)"


def field_rows(tagged: dict[str, Any]) -> list[dict[str, Any]]:
    """Header/property table rows for the template: name, type, value or nested rows. Tables
    nested deeper than MAX_NESTING are shown as JSON text (the template recurses per level)."""
    rows: list[dict[str, Any]] = []
    stack: list[tuple[list[dict[str, Any]], str, Any, int]] = [
        (rows, name, item, 0) for name, item in reversed(tagged.items())
    ]
    while stack:
        into, name, (tag, value), depth = stack.pop()
        entry = _field(name, tag, value)
        into.append(entry)
        if tag not in ("F", "A"):
            continue
        if depth + 1 >= MAX_NESTING:
            entry["value"] = _as_json([tag, value])
            entry["note"] = f"nested deeper than {MAX_NESTING} levels: shown as JSON"
            continue
        entry["children"] = []
        items = value.items() if tag == "F" else ((f"[{i}]", v) for i, v in enumerate(value))
        stack.extend((entry["children"], k, v, depth + 1) for k, v in reversed(list(items)))
    return rows


def _field(name: str, tag: str, value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "type": TYPE_NAMES.get(tag, tag), "tag": tag}
    if tag in ("x", "b"):
        raw = base64.b64decode(value)
        entry["value"] = raw.decode("utf-8", "backslashreplace")
        entry["note"] = f"{len(raw)} bytes"
    elif tag == "V":
        entry["value"] = None
    elif tag == "t":
        entry["value"] = "true" if value else "false"
    elif tag not in ("F", "A"):
        entry["value"] = value
    return entry


def _pretty(data: Any) -> str | None:
    try:
        return safe_text(json.dumps(data, indent=2, ensure_ascii=False))
    except RecursionError:
        return None


def page_context(row: dict[str, Any], mask: Redactor | None = None) -> dict[str, Any]:
    """What the detail template shows: tables, and the body as JSON, text or hex (capped).
    Viewers get everything masked, and no raw property bytes (they hold the headers)."""
    body_kind = row["body_kind"]
    body = bytes(row["body"])
    if mask is None:
        shown = body[:PREVIEW_BYTES]
        preview_cut = len(body) > PREVIEW_BYTES
        pretty = json_preview(body, body_kind) if not preview_cut else None
        text = None
        if pretty is None and body_kind in ("json", "text"):
            text = safe_text(shown.decode("utf-8", "replace"))
    else:
        viewer = viewer_body(row, mask)
        shown, preview_cut = viewer.raw, viewer.cut
        pretty = _pretty(viewer.data) if viewer.parsed else None
        text = None if viewer.parsed else viewer.text
        if viewer.parsed and pretty is None:
            text = viewer.text
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
        "hex": hexdump(shown, HEX_BYTES) if pretty is None and text is None else None,
        "hex_cut": len(shown) > HEX_BYTES,
        "preview_cut": preview_cut,
        "preview_bytes": PREVIEW_BYTES,
        "originals": field_rows(originals),
        "occurred_original": field_rows({"": originals["occurred_at"]})[0]
        if "occurred_at" in originals
        else None,
        "raw_properties": bytes(row["raw_properties"])
        if mask is None and row.get("raw_properties")
        else None,
    }


async def in_worker(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in one of the same two worker threads: CPU-bound page work (parsing
    thousands of headers) must not stall the event loop, and a flood of requests waits."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_WORKERS, functools.partial(work, *args))


async def off_loop(
    work: Callable[[dict[str, Any], Redactor | None], T], row: dict[str, Any], mask: Redactor | None
) -> T:
    """`work(row, mask)` (`detail` or `page_context`), in a worker thread when the body is
    large: masking and parsing a large body must not stall the event loop that also runs the
    recorder and the live view. Two workers: a flood of requests waits, it never multiplies."""
    if len(row["body"]) <= OFF_LOOP_BYTES:
        return work(row, mask)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_WORKERS, functools.partial(work, row, mask))

"""Two events side by side: what differs in their delivery fields and ids, their properties, their
headers and their body. One shape for the compare page and `/api/compare`.

Every value goes through the detail page's masking (web/event_view.py): a viewer compares what
a viewer may see, on both sides. Bodies are diffed structurally when both are JSON
(backend/structural_diff.py), line by line when both are text, and otherwise only said to be
equal or not. Everything is bounded: bodies past `COMPARED_BYTES`, changes past `MAX_CHANGES`,
diff lines past `MAX_DIFF_LINES`, values shown past `VALUE_CHARS`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from eventscope.backend.redaction import Redactor
from eventscope.backend.structural_diff import Change, Run, diff, path_text, summarise
from eventscope.web.display import hexdump, human_size, iso, safe_text
from eventscope.web.event_view import (
    PREVIEW_BYTES,
    masked_row,
    parse_json,
    plain_data,
    summary,
    tables,
    viewer_body,
)
from eventscope.web.json_tree import json_tree

MAX_CHANGES = 1000
COMPARED_BYTES = PREVIEW_BYTES  # larger bodies are not compared (nor shown) here
MAX_LINES = 2000  # per side, for a text diff
MAX_DIFF_LINES = 1000
MAX_LINE_CHARS = 1000
VALUE_CHARS = 300
HEX_BYTES = 1024
FIELDS = (
    ("received_at", "Received"),
    ("exchange", "Exchange"),
    ("routing_key", "Routing key"),
    ("event_type", "Event type"),
    ("source", "Source"),
    ("event_id", "Event id"),
    ("message_id", "Message id"),
    ("correlation_id", "Correlation id"),
    ("causation_id", "Causation id"),
    ("aggregate_type", "Aggregate type"),
    ("aggregate_id", "Aggregate id"),
    ("aggregate_version", "Version"),
    ("occurred_at", "Occurred"),
    ("trace_id", "Trace id"),
    ("dead_letter", "Dead letter"),
    ("redelivered", "Redelivered"),
    ("observation", "Observation"),
    ("content_type", "Content type"),
    ("body_kind", "Body"),
    ("body_size", "Size"),
)
TIMES = ("received_at", "occurred_at")
BodyKind = Literal["json", "text", "binary", "empty", "large"]
Mode = Literal["json", "text", "same", "incomparable"]


@dataclass(frozen=True)
class Body:
    """One side's body as this reader may see it."""

    kind: BodyKind
    data: Any = None  # parsed JSON (kind json) or text (kind text)
    raw: bytes = b""  # what a binary body shows (masked for viewers)
    size: int = 0


@dataclass
class Differences:
    """The changes between two values, summarised for reading, and whether the list is cut."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False


def changed_rows(before: Any, after: Any) -> Differences:
    """diff → rows with readable paths and bounded value previews (array runs folded)."""
    changes = diff(before, after, max_changes=MAX_CHANGES)
    return Differences(
        [_row(item) for item in summarise(changes)], truncated=len(changes) >= MAX_CHANGES
    )


def _row(item: Change | Run) -> dict[str, Any]:
    if isinstance(item, Run):
        shown = preview(list(item.items))
        return {
            "path": [_safe_part(p) for p in item.path],
            "path_text": f"{path_text(item.path)}[{item.start}…{item.stop}]",
            "kind": item.kind,
            "count": item.count,
            "before": shown if item.kind == "removed" else None,
            "after": shown if item.kind == "added" else None,
        }
    return {
        "path": [_safe_part(p) for p in item.path],
        "path_text": path_text(item.path),
        "kind": item.kind,
        "count": None,
        "before": preview(item.before) if item.kind != "added" else None,
        "after": preview(item.after) if item.kind != "removed" else None,
    }


def _safe_part(part: str | int) -> str | int:
    return safe_text(part) if isinstance(part, str) else part


def preview(value: Any) -> str:
    """A value as compact JSON, cut at VALUE_CHARS."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except RecursionError:
        return "(nested too deep to show)"
    text = safe_text(text)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "…"


def body_of(row: dict[str, Any], mask: Redactor | None) -> Body:
    body = bytes(row["body"])
    kind = row["body_kind"]
    if not body:
        return Body("empty")
    if mask is not None:
        shown = viewer_body(row, mask)
        if shown.cut:
            return Body("large", size=len(body))
        if shown.parsed:
            return Body("json", shown.data, size=len(body))
        if shown.text is not None:
            return Body("text", shown.text, size=len(body))
        return Body("binary", raw=shown.raw, size=len(body))
    if len(body) > COMPARED_BYTES:
        return Body("large", size=len(body))
    if kind == "json":
        parsed, data = parse_json(body)
        if parsed:
            return Body("json", data, size=len(body))
    if kind in ("json", "text"):
        return Body("text", safe_text(body.decode("utf-8", "replace")), size=len(body))
    return Body("binary", raw=body, size=len(body))


def compare_bodies(a: Body, b: Body) -> dict[str, Any]:
    """How the bodies differ: `mode` json (structural changes), text (a line diff), same, or
    incomparable (with the reason)."""
    out: dict[str, Any] = {"mode": "incomparable", "changes": [], "lines": [], "truncated": False}
    if "large" in (a.kind, b.kind):
        big = human_size(max(a.size, b.size))
        out["reason"] = (
            f"A body is larger than {human_size(COMPARED_BYTES)} ({big}): not compared here."
        )
    elif a.kind == b.kind == "empty":
        out.update(mode="same", reason="Both bodies are empty.")
    elif a.kind == b.kind == "json":
        found = changed_rows(a.data, b.data)
        mode = "json" if found.changes else "same"
        out.update(mode=mode, changes=found.changes, truncated=found.truncated)
        out["reason"] = None if found.changes else "The bodies hold the same JSON."
    elif a.kind in ("json", "text") and b.kind in ("json", "text"):
        lines, truncated = line_diff(_as_text(a), _as_text(b))
        mode = "text" if lines else "same"
        out.update(mode=mode, lines=lines, truncated=truncated)
        out["reason"] = None if lines else "The bodies hold the same text."
    elif a.kind == b.kind == "binary" and a.raw == b.raw:
        out.update(mode="same", reason="The bodies are the same bytes.")
    else:
        differ = ", different bytes" if a.kind == b.kind else ""
        out["reason"] = (
            f"Not comparable as text: {a.kind} and {b.kind} bodies "
            f"({human_size(a.size)} and {human_size(b.size)}){differ}."
        )
    return out


def _as_text(body: Body) -> str:
    if body.kind == "text":
        return str(body.data)
    try:
        return json.dumps(body.data, indent=2, ensure_ascii=False)
    except RecursionError:
        return "(nested too deep to show)"


def line_diff(a: str, b: str) -> tuple[list[tuple[str, str]], bool]:
    """A unified diff (two lines of context) as (mark, text) pairs: mark `-`, `+`, ` ` or `@`
    for a hunk header; at most MAX_LINES lines a side and MAX_DIFF_LINES out."""
    a_lines, b_lines = a.splitlines(), b.splitlines()
    truncated = len(a_lines) > MAX_LINES or len(b_lines) > MAX_LINES
    out: list[tuple[str, str]] = []
    found = difflib.unified_diff(a_lines[:MAX_LINES], b_lines[:MAX_LINES], lineterm="", n=2)
    for i, line in enumerate(found):
        if i < 2:  # the ---/+++ file header
            continue
        if len(out) >= MAX_DIFF_LINES:
            truncated = True
            break
        text = line[1:]
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + "…"
        out.append((line[:1], text))
    return out, truncated


def field_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The delivery fields and ids of both (masked rows), and whether each is the same."""
    rows = []
    for name, label in FIELDS:
        left, right = a.get(name), b.get(name)
        rows.append(
            {
                "name": name,
                "label": label,
                "a": left,
                "b": right,
                "same": left == right,
                "time": name in TIMES,
            }
        )
    return rows


def side_view(body: Body) -> dict[str, Any]:
    """What one column of the page shows of a body."""
    if body.kind == "json":
        return {"tree": json_tree(body.data), "text": None, "hex": None}
    if body.kind == "text":
        return {"tree": None, "text": body.data, "hex": None}
    if body.kind == "binary":
        return {"tree": None, "text": None, "hex": hexdump(body.raw, HEX_BYTES)}
    return {"tree": None, "text": None, "hex": None}


def tables_plain(row: dict[str, Any], mask: Redactor | None) -> tuple[dict[str, Any], ...]:
    props, headers = tables(row, mask)
    return (
        {k: plain_data(v) for k, v in props.items()},
        {k: plain_data(v) for k, v in headers.items()},
    )


def comparison(
    a_row: dict[str, Any], b_row: dict[str, Any], mask: Redactor | None
) -> dict[str, Any]:
    """Everything the page and the API show about two events (viewers: masked)."""
    a_body, b_body = body_of(a_row, mask), body_of(b_row, mask)
    a_props, a_headers = tables_plain(a_row, mask)
    b_props, b_headers = tables_plain(b_row, mask)
    props, headers = changed_rows(a_props, b_props), changed_rows(a_headers, b_headers)
    a_shown, b_shown = masked_row(a_row, mask), masked_row(b_row, mask)
    return {
        "a": a_shown,
        "b": b_shown,
        "fields": field_rows(a_shown, b_shown),
        "properties": {"changes": props.changes, "truncated": props.truncated},
        "headers": {"changes": headers.changes, "truncated": headers.truncated},
        "body": compare_bodies(a_body, b_body),
        "a_body": a_body,
        "b_body": b_body,
        "redacted": mask is not None,
    }


def page_context(
    a_row: dict[str, Any], b_row: dict[str, Any], mask: Redactor | None
) -> dict[str, Any]:
    """The compare page: the comparison and both bodies side by side."""
    context = comparison(a_row, b_row, mask)
    context["a_view"] = side_view(context.pop("a_body"))
    context["b_view"] = side_view(context.pop("b_body"))
    return context


def api_shape(
    a_row: dict[str, Any], b_row: dict[str, Any], mask: Redactor | None
) -> dict[str, Any]:
    """`/api/compare`: summaries of both events and what differs (values as JSON text)."""
    context = comparison(a_row, b_row, mask)
    fields = [
        {
            "name": f["name"],
            "a": iso(f["a"]) if f["time"] and f["a"] is not None else f["a"],
            "b": iso(f["b"]) if f["time"] and f["b"] is not None else f["b"],
            "same": f["same"],
        }
        for f in context["fields"]
    ]
    body = dict(context["body"])
    body["lines"] = [{"mark": mark, "text": text} for mark, text in body["lines"]]
    return {
        "a": summary(a_row, mask),
        "b": summary(b_row, mask),
        "fields": fields,
        "properties": context["properties"],
        "headers": context["headers"],
        "body": body,
        "redacted": context["redacted"],
    }

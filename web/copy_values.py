"""The values the detail page's copy buttons put on the clipboard: whole ids, not display forms.

An id's text column holds a display form (`envelope.id_text`: capped at MAX_ID_CHARS, NUL shown
as ␀, lone surrogates escaped). When a column may have been altered that way, the operator's
copy is taken from the event itself again (body, properties, headers). A viewer copies what a
viewer sees: the masked display value.
"""

from __future__ import annotations

from typing import Any

from eventscope.backend.envelope import MAX_ID_CHARS, extract_originals
from eventscope.backend.redaction import Redactor
from eventscope.web.event_view import masked_row, parse_json, plain_data, tables

COPIED = ("event_id", "message_id", "correlation_id", "causation_id", "aggregate_id", "trace_id")
MAX_COPY_CHARS = 256 * 1024  # a copy button carries its value in the page


def copy_values(row: dict[str, Any], mask: Redactor | None) -> dict[str, str | None]:
    """id name → the text its copy button copies (None: no value, no button)."""
    if mask is not None:
        shown = masked_row(row, mask)
        return {name: _bounded(shown.get(name)) for name in COPIED}
    values: dict[str, Any] = {name: row.get(name) for name in COPIED}
    altered = [name for name, value in values.items() if _maybe_altered(value)]
    if altered:
        originals = _originals(row)
        for name in altered:
            if originals.get(name) is not None:
                values[name] = originals[name]
    return {name: _bounded(value) for name, value in values.items()}


def _maybe_altered(value: Any) -> bool:
    return isinstance(value, str) and (
        len(value) >= MAX_ID_CHARS or "\u2400" in value or "\\" in value
    )


def _originals(row: dict[str, Any]) -> dict[str, Any]:
    """The ids as the recorder found them, read again from the stored event."""
    data = None
    if row["body_kind"] == "json":
        _, data = parse_json(bytes(row["body"]))
    props, headers = tables(row, None)
    plain_props = {name: plain_data(value) for name, value in props.items()}
    plain_headers = {name: plain_data(value) for name, value in headers.items()}
    found = extract_originals(data, plain_props, plain_headers)
    found["message_id"] = plain_props.get("message_id")
    return found


def _bounded(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    return str(value)[:MAX_COPY_CHARS]

"""What a dead letter says about its failure beyond `x-death` (backend/xdeath.py): its error
text, the seed's `dlq.<key>` wrapper, and a fingerprint that groups failures of one kind.

Pure and total: headers and bodies are bus data anyone can forge, so each reader returns what
it could read plus short problem notes, and never raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from eventscope.backend.envelope import parse_json_object
from eventscope.backend.fieldtable import plain
from eventscope.backend.xdeath import MISSING, PYTHON_TYPES, headers_table, typed_value

MAX_ERROR_CHARS = 4096
MAX_NORMALISED_CHARS = 500
MAX_NORMALISE_INPUT = 100_000  # what normalising looks at: far more than it can keep
DEFAULT_ERROR_HEADERS = ("x-exception-message", "x-error", "error")


@dataclass(frozen=True)
class DlqWrapper:
    """The seed's dead letter body `{originalEvent, error, retries}` (under `data` or not)."""

    original_event: dict[str, Any] | None
    error: str | None
    retries: int | None
    malformed: str | None  # why the body is not that shape; None when it is
    location: Literal["top", "data"] | None = None  # where the fields were found


def _bytes_text(encoded: str) -> str | None:
    """Base64 bytes as text, invalid UTF-8 escaped; only as much as `MAX_ERROR_CHARS` needs."""
    chunk = encoded[: (MAX_ERROR_CHARS * 4 + 2) // 3 * 4]  # 4 bytes per character at most
    try:
        raw = base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return None
    return raw.decode("utf-8", "backslashreplace")[:MAX_ERROR_CHARS]


def _header_text(raw: Any) -> str | None:
    """A header value as error text: text as is, bytes decoded, numbers and times written
    out, tables and arrays as JSON; flags, voids and undecodable values are no error text."""
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str)):
        return None
    if raw[0] not in PYTHON_TYPES:  # checked after: a list as tag is not hashable
        return None
    tag = raw[0]
    value = typed_value(raw, tag)
    if value is MISSING or tag in ("t", "V", "R", "?"):
        return None
    if tag in ("b", "x"):
        return _bytes_text(value)
    if tag in ("F", "A"):
        try:
            return json.dumps(plain(raw), ensure_ascii=False)[:MAX_ERROR_CHARS]
        except (ValueError, TypeError, AttributeError, RecursionError):  # forged pairs
            return None
    return str(value)[:MAX_ERROR_CHARS]


def error_text(
    headers_json: str | None, names: Sequence[str] = DEFAULT_ERROR_HEADERS
) -> str | None:
    """The first non-empty error header among `names`: native dead letters carry no error."""
    return header_text(headers_json, names)


def header_text(headers_json: str | None, names: Sequence[str]) -> str | None:
    """The first non-empty header among `names` as text (matched ignoring case, the exact
    spelling first), bounded to `MAX_ERROR_CHARS`."""
    table, problem = headers_table(headers_json)
    if problem is not None or not table:
        return None
    by_lower: dict[str, list[str]] = {}
    for key in table:
        by_lower.setdefault(key.lower(), []).append(key)
    for name in names:
        for key in sorted(by_lower.get(name.lower(), ()), key=lambda k: k != name):
            text = _header_text(table[key])
            if text and text.strip():
                return text
    return None


_WRAPPER_KEYS = ("originalEvent", "error", "retries")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return "text" if isinstance(value, str) else "null"


def dlq_wrapper(body: bytes | bytearray | memoryview) -> DlqWrapper:
    """Read the seed's dead letter body; `malformed` says why it is not that shape."""
    readable = isinstance(body, bytes | bytearray | memoryview)
    kind, doc = parse_json_object(bytes(body)) if readable else ("not bytes", None)
    if kind != "json":
        why = "body is empty" if kind == "empty" else f"body is not JSON ({kind})"
        return DlqWrapper(None, None, None, why)
    if not isinstance(doc, dict):
        return DlqWrapper(None, None, None, f"body is {_json_kind(doc)}, not an object")
    data = doc.get("data")
    data = data if isinstance(data, dict) else {}
    location: Literal["top", "data"]
    if "originalEvent" in doc or ("originalEvent" not in data and doc.keys() & _WRAPPER_KEYS):
        fields, location = doc, "top"
    elif data.keys() & _WRAPPER_KEYS:
        fields, location = data, "data"
    else:
        why = "no originalEvent, error or retries (at the top level or under data)"
        return DlqWrapper(None, None, None, why)
    problems: list[str] = []
    original = fields.get("originalEvent")
    if not isinstance(original, dict):
        problems.append(
            "originalEvent missing"
            if "originalEvent" not in fields
            else f"originalEvent is {_json_kind(original)}, not an object"
        )
        original = None
    error = fields.get("error")
    if "error" not in fields:
        problems.append("error missing")
    elif not isinstance(error, str):
        problems.append(f"error is {_json_kind(error)}, not text")
        try:
            error = None if error is None else json.dumps(error, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            error = None
    retries = fields.get("retries")
    if not isinstance(retries, int) or isinstance(retries, bool):
        problems.append(
            "retries missing"
            if "retries" not in fields
            else f"retries is {_json_kind(retries)}, not an integer"
        )
        retries = None
    elif retries < 0:
        problems.append("retries is negative")
    return DlqWrapper(
        original,
        error[:MAX_ERROR_CHARS] if isinstance(error, str) else None,
        retries,
        "; ".join(problems) or None,
        location,
    )


# One pass, leftmost alternative first. Linear: every unbounded part is either consumed by the
# match or tried once per run (the hex run only where a run starts, which its lookbehind
# checks). Idempotent: after one pass no digit is left, and every alternative but a UUID of
# letters only needs one; such a UUID would have been replaced in the first pass.
_VOLATILE = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<time>[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?)"
    r"|(?P<hex>(?<![0-9A-Za-z])(?:0[xX])?(?=[0-9]*[a-fA-F])(?=[a-fA-F]*[0-9])"
    r"[0-9a-fA-F]{8,}(?![0-9A-Za-z]))"
    r"|(?P<n>(?:(?<![0-9A-Za-z])-)?\d+(?:\.\d+)?)"
)


def _placeholder(match: re.Match[str]) -> str:
    return f"<{match.lastgroup}>"


def normalise_error(text: str) -> str:
    """Error text with what differs between failures of one kind replaced: UUIDs, ISO times,
    hex ids (8+ digits), numbers (`order_42` → `order_<n>`); whitespace collapsed, at most
    `MAX_NORMALISED_CHARS`. Idempotent."""
    collapsed = " ".join(text[:MAX_NORMALISE_INPUT].split())
    return _VOLATILE.sub(_placeholder, collapsed)[:MAX_NORMALISED_CHARS].rstrip()


def failure_fingerprint(
    queue: str | None, reason: str | None, routing_key: str | None, error: str | None
) -> str:
    """16 hex digits naming a kind of failure: the four fields, the error normalised (no
    error and an empty one are the same). Each field is length-prefixed, None apart from ""."""
    digest = hashlib.blake2b(digest_size=8, person=b"eventscope-fail1")
    for part in (queue, reason, routing_key, normalise_error(error or "")):
        if part is None:
            digest.update(b"\x00")
            continue
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(b"\x01" + len(raw).to_bytes(8, "big") + raw)
    return digest.hexdigest()

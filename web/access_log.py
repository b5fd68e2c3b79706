"""Uvicorn's access log, without secrets in it.

The access log prints every request line with its query string, and the printed login link
carries the token there (`/login?token=…`); a mistyped link carries a near miss. Query
parameters whose name is `token` or contains a redaction word (`EVENTSCOPE_REDACT_FIELDS`) are
logged with their value replaced by `***`. `eventscope serve` installs the filter on uvicorn's
access handler (`log_config`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from eventscope.backend.redaction import Redactor

HIDDEN = "***"


def redact_query(target: str, secret: Callable[[str], bool]) -> str:
    """`path?query` with the values of secret parameters replaced."""
    path, mark, query = target.partition("?")
    if not mark:
        return target
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={HIDDEN}" if equals and secret(unquote_plus(name)) else part)
    return path + "?" + "&".join(parts)


class RedactQuery(logging.Filter):
    """Rewrites the request targets among a log record's arguments (uvicorn passes the path
    with its query string as an argument of the access line, HTTP and websocket alike)."""

    def __init__(self, fields: tuple[str, ...] = ()) -> None:
        super().__init__()
        words = Redactor(fields)
        self.secret = lambda name: name.strip().lower() == "token" or words.sensitive(name)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, str) and "?" in a for a in record.args
        ):
            record.args = tuple(
                redact_query(a, self.secret) if isinstance(a, str) else a for a in record.args
            )
        return True


def log_config(fields: tuple[str, ...]) -> dict[str, Any]:
    """Uvicorn's default logging configuration with the filter on its access handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_query"] = {"()": RedactQuery, "fields": fields}
    config["handlers"]["access"]["filters"] = ["redact_query"]
    return config

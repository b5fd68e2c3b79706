"""Masks secrets in what viewers see. The stored bytes never change.

Masked: values of JSON keys and headers whose name contains a configured word (case-insensitive,
`_`/`-` ignored: `password` masks `userPassword` and `db-password`), whatever the value is (a
string, a number, an array, an object); `word=value` / `"word": value` pairs in any text,
strings inside JSON included (backend/secret_pairs.py); and card numbers, 13–19 digits that pass
the Luhn check, wherever they appear (backend/card_numbers.py). Every pass is linear in the
size of its input; callers bound the input (web/event_view.py masks at most a preview).
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Iterable
from typing import Any

from eventscope.backend.card_numbers import luhn_ok, mask_cards
from eventscope.backend.secret_pairs import mask_pairs

__all__ = ["DEFAULT_FIELDS", "MASK", "Redactor", "luhn_ok"]

MASK = "••••••"
DEFAULT_FIELDS = ("password", "secret", "token", "authorization")
_CARD_SIZED = (10**12, 10**19)  # integers of 13 to 19 digits


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


class Redactor:
    """Masks by field name, `name=value` pairs and card numbers; `fields=()` masks card
    numbers only."""

    def __init__(self, fields: tuple[str, ...] = DEFAULT_FIELDS) -> None:
        self.words = tuple(_normal(f.strip()) for f in fields if f.strip())
        self.sensitive = functools.lru_cache(maxsize=4096)(self._sensitive)  # names repeat

    def _sensitive(self, name: str) -> bool:
        """Whether a key or header called `name` holds a secret."""
        key = _normal(name)
        return any(word in key for word in self.words)

    def text(self, value: str) -> str:
        """Plain text: secret pairs and card numbers masked."""
        if self.words:
            value = mask_pairs(value, self.sensitive, MASK)
        return mask_cards(value, MASK)

    def raw(self, value: bytes) -> bytes:
        """Bytes (a body, a byte-array header) masked as text; bytes that are not UTF-8 are
        kept as they are around the masks."""
        text = value.decode("utf-8", "surrogateescape")
        masked = self.text(text)
        return value if masked == text else masked.encode("utf-8", "surrogateescape")

    def number(self, value: int | float) -> int | float | str:
        """A JSON number that is a card number becomes masked text."""
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer():
                return value
            whole = int(value)
        else:
            whole = value
        if not _CARD_SIZED[0] <= abs(whole) < _CARD_SIZED[1]:
            return value
        text = str(whole)
        masked = mask_cards(text, MASK)
        return value if masked == text else masked

    def data(self, value: Any) -> Any:
        """A parsed JSON document with secrets masked (iterative: any depth). Keys are masked
        as text too (a card number can be a key)."""
        root: list[Any] = [value]
        stack: list[tuple[Any, Any]] = [(root, 0)]
        while stack:
            container, key = stack.pop()
            item = container[key]
            if isinstance(item, dict):
                copy: dict[Any, Any] = {}
                container[key] = copy
                for k, v in item.items():
                    shown = self.text(k) if isinstance(k, str) else k
                    if isinstance(k, str) and self.sensitive(k) and v is not None:
                        copy[shown] = MASK
                    else:
                        copy[shown] = v
                        stack.append((copy, shown))
            elif isinstance(item, list):
                copy_list = list(item)
                container[key] = copy_list
                stack.extend((copy_list, i) for i in range(len(copy_list)))
            elif isinstance(item, str):
                container[key] = self.text(item)
            elif isinstance(item, int | float) and not isinstance(item, bool):
                container[key] = self.number(item)
        return root[0]

    def tagged(self, table: dict[str, Any]) -> dict[str, Any]:
        """A typed header/property table (backend.fieldtable) with secrets masked: by name,
        and in every name, string, byte array and number. Iterative: any depth."""
        out: dict[str, Any] = {}
        stack: list[tuple[Iterable[tuple[str | None, Any]], dict[str, Any] | list[Any]]]
        stack = [(table.items(), out)]
        while stack:
            entries, target = stack.pop()
            for name, (tag, value) in entries:
                cell: list[Any]
                if name is not None and self.sensitive(name):
                    cell = ["s", MASK]
                elif tag == "F":
                    cell = ["F", {}]
                    stack.append((value.items(), cell[1]))
                elif tag == "A":
                    cell = ["A", []]
                    stack.append((((None, v) for v in value), cell[1]))
                else:
                    cell = self._scalar(tag, value)
                if isinstance(target, dict):
                    target[self.text(name or "")] = cell
                else:
                    target.append(cell)
        return out

    def _scalar(self, tag: str, value: Any) -> list[Any]:
        if tag == "s" and isinstance(value, str):
            return [tag, self.text(value)]
        if tag in ("x", "b") and isinstance(value, str):
            stored = base64.b64decode(value)
            masked = self.raw(stored)
            return [tag, value if masked == stored else base64.b64encode(masked).decode("ascii")]
        if tag == "i" and isinstance(value, int) and not isinstance(value, bool):
            shown = self.number(value)
            return ["s", shown] if isinstance(shown, str) else [tag, value]
        if tag == "f" and isinstance(value, float):
            shown = self.number(value)
            return ["s", shown] if isinstance(shown, str) else [tag, value]
        if tag in ("d", "?", "Ti") and isinstance(value, str | int):
            written = str(value)
            hidden = self.text(written)
            return [tag, value] if hidden == written else ["s", hidden]
        return [tag, value]

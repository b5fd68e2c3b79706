"""Masks secrets in what viewers see. The stored bytes never change.

Masked: values of JSON keys and headers whose name contains a configured word (case-insensitive,
`_`/`-` ignored: `password` masks `userPassword` and `db-password`), `word=value` / `"word": value`
pairs in plain text, and card numbers (13–19 digits that pass the Luhn check).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "••••••"
DEFAULT_FIELDS = ("password", "secret", "token", "authorization")
_CARD = re.compile(r"(?<![\d])(?:\d[ -]?){12,18}\d(?![\d])")


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class Redactor:
    """Masks by field name and card-number pattern; `fields=()` masks card numbers only."""

    def __init__(self, fields: tuple[str, ...] = DEFAULT_FIELDS) -> None:
        self.words = tuple(_normal(f) for f in fields if f.strip())
        self._pairs = (
            re.compile(
                r"(?i)((?:" + "|".join(re.escape(f.strip()) for f in fields if f.strip()) + r")"
                r"[\w-]*[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,;}]+)"
            )
            if self.words
            else None
        )

    def sensitive(self, name: str) -> bool:
        key = _normal(name)
        return any(word in key for word in self.words)

    def text(self, value: str) -> str:
        """Plain text: key=value pairs and card numbers masked."""
        if self._pairs is not None:
            value = self._pairs.sub(lambda m: m.group(1) + MASK, value)
        return _CARD.sub(_mask_card, value)

    def data(self, value: Any) -> Any:
        """A parsed JSON document with sensitive values masked (iterative: any depth)."""
        root: list[Any] = [value]
        stack: list[tuple[Any, Any]] = [(root, 0)]
        while stack:
            container, key = stack.pop()
            item = container[key]
            if isinstance(item, dict):
                copy = dict(item)
                container[key] = copy
                for k in copy:
                    if isinstance(k, str) and self.sensitive(k) and copy[k] is not None:
                        copy[k] = MASK
                    else:
                        stack.append((copy, k))
            elif isinstance(item, list):
                copy_list = list(item)
                container[key] = copy_list
                stack.extend((copy_list, i) for i in range(len(copy_list)))
            elif isinstance(item, str):
                container[key] = _CARD.sub(_mask_card, item)
            elif (
                isinstance(item, int) and not isinstance(item, bool) and 13 <= len(str(item)) <= 19
            ):
                text = str(item)  # a card number stored as a JSON number
                masked = _CARD.sub(_mask_card, text)
                if masked != text:
                    container[key] = masked
        return root[0]

    def tagged(self, table: dict[str, Any]) -> dict[str, Any]:
        """A typed header/property table (backend.fieldtable) with sensitive values masked."""
        out: dict[str, Any] = {}
        for name, (tag, value) in table.items():
            if self.sensitive(name):
                out[name] = ["s", MASK]
            elif tag == "F":
                out[name] = ["F", self.tagged(value)]
            elif tag == "A":
                out[name] = ["A", [self.tagged({"": v})[""] for v in value]]
            elif tag == "s":
                out[name] = ["s", _CARD.sub(_mask_card, value)]
            else:
                out[name] = [tag, value]
        return out


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return MASK + digits[-4:]
    return match.group()

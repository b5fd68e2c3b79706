"""Card numbers in text: 13–19 digits passing the Luhn check, found in one linear pass.

A backtracking pattern such as `(?:\\d[ -]?){12,18}\\d` is slow on long digit runs and, worse,
a greedy match that swallows a neighbouring number ("2024-01-01 4111 1111 1111 1111") fails the
Luhn check and leaves the card in the clear. Here each maximal run of digit groups (digits
joined by one space or dash) is read once: the whole run is a card when it has 13–19 digits and
passes; otherwise windows of whole groups are tried, each starting where cards start (a group
of four digits, or one group of 13–19) and at most 19 digits long, their Luhn sums taken from
prefix sums, so the work per run is linear with a small constant. Digits of any script count,
as `int` reads them.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate

_RUN = re.compile(r"\d++(?:[ -]\d++)*+")
_GROUP = re.compile(r"\d++")
_START = re.compile(r"(?<!\d)(?:\d{4}|\d{13,19})(?!\d)")  # a group where a written card begins
_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 when that is two digits
MIN_DIGITS, MAX_DIGITS = 13, 19


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits."""
    backwards = digits[::-1]
    plain = sum(map(int, backwards[0::2]))
    doubled = sum(map(int, backwards[1::2].translate(_DOUBLED)))
    return (plain + doubled) % 10 == 0


class _Luhn:
    """Luhn sums of every window of one digit string in O(1) each, from prefix sums: digit k
    counts plain when an even distance from the window's last digit, doubled when odd."""

    def __init__(self, digits: str) -> None:
        doubled = digits.translate(_DOUBLED)
        self.plain = (_prefix(digits[0::2]), _prefix(digits[1::2]))  # even, odd positions
        self.doubled = (_prefix(doubled[0::2]), _prefix(doubled[1::2]))

    def ok(self, start: int, end: int) -> bool:
        """Whether digits[start:end] pass the check."""
        even = ((start + 1) // 2, (end + 1) // 2)  # index ranges into the even/odd prefixes
        odd = (start // 2, end // 2)
        if (end - 1) % 2 == 0:
            total = _sum(self.plain[0], even) + _sum(self.doubled[1], odd)
        else:
            total = _sum(self.plain[1], odd) + _sum(self.doubled[0], even)
        return total % 10 == 0


def _prefix(digits: str) -> list[int]:
    """Prefix sums of the digits' ASCII codes (summed in C); `_sum` takes the zeros out."""
    return list(accumulate(digits.encode("ascii"), initial=0))


def _sum(prefix: list[int], span: tuple[int, int]) -> int:
    return prefix[span[1]] - prefix[span[0]] - ord("0") * (span[1] - span[0])


def _cards(run: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, digits) of each card in one run of digit groups, left to right."""
    if not run.isascii():  # other scripts' digits (`\\d` matches them) read as ASCII ones
        run = "".join(c if c in " -" else str(int(c)) for c in run)
    count = len(run) - run.count(" ") - run.count("-")
    if MIN_DIGITS <= count <= MAX_DIGITS:
        whole = run.replace(" ", "").replace("-", "")
        if luhn_ok(whole):
            yield 0, len(run), whole
            return
    if count == len(run) or _START.search(run) is None:
        return  # one long number (an id, an amount), or no group where a written card begins
    spans = [m.span() for m in _GROUP.finditer(run)]
    digits = run.replace(" ", "").replace("-", "")
    luhn = _Luhn(digits)
    before = list(accumulate((last - first for first, last in spans), initial=0))
    i = 0
    while i < len(spans):
        size = before[i + 1] - before[i]
        found = None
        if size == 4 or MIN_DIGITS <= size <= MAX_DIGITS:  # where written cards begin
            # windows of whole groups holding 13 to 19 digits: group ends in that range
            lo = bisect_left(before, before[i] + MIN_DIGITS, i + 1)
            hi = bisect_right(before, before[i] + MAX_DIGITS, lo)
            for end in range(lo, hi):
                if luhn.ok(before[i], before[end]):
                    found = end - 1  # the last group; the longest window wins: masks the most
        if found is None:
            i += 1
            continue
        yield spans[i][0], spans[found][1], digits[before[i] : before[found + 1]]
        i = found + 1


def mask_cards(text: str, mask: str) -> str:
    """`text` with every card number replaced by `mask` and the card's last four digits."""
    if len(text) < MIN_DIGITS:
        return text
    parts: list[str] = []
    last = 0
    for run in _RUN.finditer(text):
        if run.end() - run.start() < MIN_DIGITS:
            continue
        base = run.start()
        for start, end, digits in _cards(run.group()):
            parts.append(text[last : base + start])
            parts.append(mask + digits[-4:])
            last = base + end
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)

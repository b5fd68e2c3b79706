"""AMQP topic patterns, matched exactly as RabbitMQ matches them, in linear time.

A routing key is a list of words separated by dots (`order.created`; `a..b` has an empty middle
word; the empty key has no words). In a pattern `*` stands for exactly one word and `#` for
zero or more words. The matcher simulates the pattern as a small automaton over the key's
words — a set of pattern positions advanced word by word — so its cost is at most
len(pattern words) × len(key words), never exponential like a backtracking regex. Patterns are
capped at `MAX_PATTERN_BYTES` (a routing key holds at most 255 bytes; a longer pattern is a
mistake or an attack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_PATTERN_BYTES = 255
_ONE, _ANY = "*", "#"


def words(text: str) -> list[str]:
    """A routing key or pattern as RabbitMQ splits it: the empty string has no words."""
    return text.split(".") if text else []


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """A parsed pattern; `matches(routing_key)`."""

    text: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        """Raises ValueError (with a message for a user) for a pattern RabbitMQ could not
        bind either: longer than 255 bytes."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_PATTERN_BYTES:
            raise ValueError(f"a pattern holds at most {MAX_PATTERN_BYTES} bytes, not {size}")
        return cls(text, tuple(words(text)))

    @property
    def is_literal(self) -> bool:
        """No wildcard: the pattern matches exactly one routing key, itself."""
        return _ONE not in self.parts and _ANY not in self.parts

    def matches(self, routing_key: str) -> bool:
        return _match(self.parts, words(routing_key))


def _match(pattern: Sequence[str], key: Sequence[str]) -> bool:
    """Positions in the pattern reachable after each key word (an NFA, breadth first)."""
    states = _closure({0}, pattern)
    for word in key:
        following: set[int] = set()
        for at in states:
            if at == len(pattern):
                continue
            part = pattern[at]
            if part == _ANY:
                following.add(at)  # `#` swallows this word and stays
            elif part in (_ONE, word):
                following.add(at + 1)
        if not following:
            return False
        states = _closure(following, pattern)
    return len(pattern) in states


def _closure(states: set[int], pattern: Sequence[str]) -> set[int]:
    """Add the positions reachable without consuming a word (`#` may match nothing)."""
    out = set(states)
    stack = list(states)
    while stack:
        at = stack.pop()
        if at < len(pattern) and pattern[at] == _ANY and at + 1 not in out:
            out.add(at + 1)
            stack.append(at + 1)
    return out


def any_matches(patterns: Sequence[TopicPattern], routing_key: str) -> bool:
    """Several patterns are OR-ed, as several bindings of one queue are."""
    return any(p.matches(routing_key) for p in patterns)

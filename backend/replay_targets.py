"""Where a replay may go: targets, the allowlist (`EVENTSCOPE_REPLAY_TARGETS`) and the default
target of a stored message.

A target is an exchange with a routing key, or a queue — reached through the default exchange,
so the message arrives with the queue's name as its routing key and only that queue's consumers
see it. Every target is checked against the allowlist: `exchange:<glob>` and `queue:<glob>`
entries, where `*` matches any run of characters and everything else is literal. The default
list is the recorded exchanges minus the dead-letter ones (named like `dlx`, `dlq`, `dead`, as
backend/trace.py tells them) and no queue. `x-death` and the seed's `dlq.` wrapper are bus data
anyone can forge: they only *propose* a target, the allowlist decides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eventscope.backend.xdeath import death_history, first_death

TargetKind = Literal["exchange", "queue"]
KINDS: tuple[TargetKind, ...] = ("exchange", "queue")
_DEAD_LETTER_NAME = re.compile(r"dlx|dlq|dead", re.IGNORECASE)  # as backend/trace.py
DLQ_PREFIX = "dlq."
MAX_NAME = 255  # AMQP short strings: exchange, queue and routing key
_UNSENDABLE = re.compile("[\x00-\x1f\ud800-\udfff]")  # control characters, lone surrogates


@dataclass(frozen=True)
class Target:
    """Where one publish goes. For a queue, `routing_key` is the queue's name."""

    kind: TargetKind
    name: str  # exchange name ("" the default exchange) or queue name
    routing_key: str

    @classmethod
    def exchange(cls, name: str, routing_key: str) -> Target:
        return cls("exchange", name, routing_key)

    @classmethod
    def queue(cls, name: str) -> Target:
        return cls("queue", name, name)

    @property
    def publish_exchange(self) -> str:
        """The exchange the publish names: a queue is reached through the default exchange."""
        return "" if self.kind == "queue" else self.name

    @property
    def entry(self) -> str:
        """The allowlist entry that names exactly this target."""
        if self.kind == "exchange" and self.name == "":
            return f"queue:{self.routing_key}"  # the default exchange delivers to that queue
        return f"{self.kind}:{self.name}"

    @property
    def label(self) -> str:
        if self.kind == "queue":
            return f"queue {self.name}"
        return f"exchange {self.name or '(default)'} → {self.routing_key}"

    @property
    def not_allowed(self) -> str:
        """What a refusal says: the target and the allowlist entry that would admit it."""
        return (
            f"{self.label} is not an allowed replay target: add {self.entry} to "
            "EVENTSCOPE_REPLAY_TARGETS"
        )

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "routing_key": self.routing_key}


def target_from_json(value: Any) -> Target:
    """A target as the API takes it: `{"kind": "queue", "name": ...}` or `{"kind": "exchange",
    "name": ..., "routing_key": ...}`; raises ValueError saying what is wrong."""
    if not isinstance(value, Mapping):
        raise ValueError("target must be an object with kind and name")
    kind, name = value.get("kind"), value.get("name")
    if kind not in KINDS:
        raise ValueError("target kind must be exchange or queue")
    if not isinstance(name, str):
        raise ValueError("target name must be a string")
    if kind == "queue":
        if not name:
            raise ValueError("a queue target needs a queue name")
        return _checked(Target.queue(name))
    routing_key = value.get("routing_key", "")
    if not isinstance(routing_key, str):
        raise ValueError("target routing_key must be a string")
    return _checked(Target.exchange(name, routing_key))


def _checked(target: Target) -> Target:
    for what, text in (("name", target.name), ("routing key", target.routing_key)):
        if len(text.encode("utf-8", "surrogatepass")) > MAX_NAME:
            raise ValueError(f"target {what} is longer than {MAX_NAME} bytes")
        if _UNSENDABLE.search(text):
            raise ValueError(f"target {what} holds a control character or a lone surrogate")
    return target


@dataclass(frozen=True)
class Allowlist:
    """`exchange:<glob>` / `queue:<glob>` entries; `*` is the only wildcard."""

    entries: tuple[str, ...]

    def __post_init__(self) -> None:
        for entry in self.entries:
            kind, sep, _ = entry.partition(":")
            if not sep or kind not in KINDS:
                raise ValueError(f"replay target {entry!r}: write exchange:<glob> or queue:<glob>")

    def allows(self, target: Target) -> bool:
        """The default exchange routes to the queue named by the key: it is that queue."""
        if target.kind == "exchange" and target.name == "":
            target = Target.queue(target.routing_key)
        return any(
            entry.startswith(f"{target.kind}:") and _glob(entry.partition(":")[2], target.name)
            for entry in self.entries
        )


def _glob(pattern: str, name: str) -> bool:
    """`*` matches any run of characters; linear in the name (no backtracking): the first
    part is a prefix, the last a suffix, the ones between are found leftmost in order."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return name == pattern
    first, *middle, last = parts
    if len(name) < len(first) + len(last) or not name.startswith(first):
        return False
    if not name.endswith(last):
        return False
    at, end = len(first), len(name) - len(last)
    for part in middle:
        found = name.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


def is_dead_letter_exchange(name: str) -> bool:
    return _DEAD_LETTER_NAME.search(name) is not None


def default_allowlist(exchanges: Iterable[str]) -> tuple[str, ...]:
    """The recorded exchanges minus the dead-letter ones; no queue."""
    return tuple(f"exchange:{e}" for e in exchanges if not is_dead_letter_exchange(e))


@dataclass(frozen=True)
class Proposal:
    """The targets a stored message proposes, the default first, with what was read."""

    default: Target | None
    original: Target | None  # the exchange and routing key it was first published to
    notes: tuple[str, ...] = ()  # why a target could not be proposed


def proposed_targets(row: Mapping[str, Any]) -> Proposal:
    """Native dead letter: back to the queue it died in (the newest `x-death` entry), else
    the exchange of its first death (`x-first-death-exchange`) under the routing key it was
    first published with. The seed's `dlq.<key>` wrapper: the
    exchange it was published on, under `<key>`. Any other event: where it was published."""
    kind = row.get("dead_letter")
    exchange = row.get("exchange")
    routing_key = row.get("routing_key")
    if kind == "x-death":
        entries, problems = death_history(row.get("headers"))
        notes = list(problems)
        queue = entries[0].queue if entries else None
        first = first_death(row.get("headers"))  # x-first-death-exchange, else x-death's
        keys = entries[-1].routing_keys if entries else ()
        original = None
        if first is not None and first.exchange is not None and keys:
            original = _maybe(Target.exchange(first.exchange, keys[0]), notes)
        default = _maybe(Target.queue(queue), notes) if queue else None
        if default is None:
            notes.append("x-death names no queue it died in")
        return Proposal(default or original, original, tuple(notes))
    if kind == "dlq-key" and isinstance(exchange, str) and isinstance(routing_key, str):
        key = routing_key[len(DLQ_PREFIX) :] if routing_key.startswith(DLQ_PREFIX) else routing_key
        target = _maybe(Target.exchange(exchange, key), notes := [])
        return Proposal(target, target, tuple(notes))
    if isinstance(exchange, str) and isinstance(routing_key, str):
        target = _maybe(Target.exchange(exchange, routing_key), notes := [])
        return Proposal(target, target, tuple(notes))
    return Proposal(None, None, ("the stored exchange or routing key cannot be published to",))


def _maybe(target: Target, notes: list[str]) -> Target | None:
    try:
        return _checked(target)
    except ValueError as exc:
        notes.append(str(exc))
        return None

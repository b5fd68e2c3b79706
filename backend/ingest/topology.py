"""Declares the tap queue and binds it so that it receives everything each exchange routes.

The broker does not report an exchange's type to a client, so it is checked against the broker:
a declaration that does not match an existing exchange is refused (406), one that matches is a
no-op. It must match in everything the broker compares: type, durable, auto-delete, internal
and the `alternate-exchange` argument (the only argument RabbitMQ compares for exchanges). The
refusal names the first attribute that differs and its current value ("inequivalent arg
'durable' …: received 'true' but current is 'false'"), so the probe starts from a durable topic
exchange and takes each refused attribute from the refusal until a declaration is accepted —
only that accepted declaration counts, the text is never trusted on its own. Should the text not
be readable (another broker version, a name long enough to cut the 255-character reply), every
combination of type and flags is tried. A missing exchange is declared durable/topic, as the
seed's producers do.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any

import aio_pika
import aiormq

from eventscope.backend.amqp_session import declare_queue

log = logging.getLogger(__name__)

BUILTIN_TYPES = {
    "amq.topic": "topic",
    "amq.fanout": "fanout",
    "amq.headers": "headers",
    "amq.match": "headers",
    "amq.direct": "direct",
}
CATCH_ALL: dict[str, tuple[str, dict[str, Any] | None]] = {
    "topic": ("#", None),
    "fanout": ("", None),
    "headers": ("", {"x-match": "all"}),
}


@dataclass(frozen=True)
class TapSpec:
    queue: str
    max_length: int
    queue_type: str

    def arguments(self) -> dict[str, Any]:
        return {
            "x-max-length": self.max_length,
            "x-overflow": "drop-head",
            "x-queue-type": self.queue_type,
        }


async def _try(connection: aio_pika.abc.AbstractConnection, **declare: Any) -> bool:
    """Declare an exchange on a throwaway channel; False when the broker refuses it."""
    return await _refusal(connection, **declare) is None


async def _refusal(connection: aio_pika.abc.AbstractConnection, **declare: Any) -> str | None:
    """Declare an exchange on a throwaway channel: None when accepted, else the refusal text."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(**declare)
        return None
    except aiormq.exceptions.ChannelClosed as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    finally:
        if not channel.is_closed:
            await channel.close()


@dataclass(frozen=True)
class ExchangeShape:
    """What a redeclaration must repeat for the broker to accept it."""

    type: str = "topic"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)

    def declare(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": self.type,
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "internal": self.internal,
            "arguments": dict(self.arguments) or None,
        }


_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for .*?: received .*? but current is (.*)$")
_QUOTED = re.compile(r"^'(.*)'$")
_VALUE = re.compile(r"^the value '(.*)' of type '\w+'$")
_FLAGS = {"durable", "auto_delete", "internal"}
_TRUNCATED = "..."  # RabbitMQ cuts a reply text at 255 characters and marks the cut so


def _alternate_exchanges(current: str) -> list[str | None]:
    """The alternate exchange a refusal says the exchange has: None for none; several
    candidates when the text was cut after the value (its closing quote is ambiguous)."""
    if current == "none":
        return [None]
    if found := _VALUE.match(current):
        return [found.group(1)]
    prefix = "the value '"
    if not current.startswith(prefix) or not current.endswith(_TRUNCATED):
        return []
    rest = current[len(prefix) : -len(_TRUNCATED)]
    ends = [i for i, char in enumerate(rest) if char == "'"]
    return [rest[:i] for i in reversed(ends)]  # longest first: the value may contain quotes


def learn_from_refusal(shape: ExchangeShape, refusal: str) -> list[ExchangeShape]:
    """Shapes corrected by what a 406 refusal says the exchange currently has, most likely
    first; empty when the refusal cannot be read (or says nothing new)."""
    found = _INEQUIVALENT.search(refusal.strip())
    if found is None:
        return []
    key, current = found.group(1), found.group(2).strip()
    learned: list[ExchangeShape] = []
    if key == "type" and (quoted := _QUOTED.match(current)):
        learned = [replace(shape, type=quoted.group(1))]
    elif key == "durable" and current in ("'true'", "'false'"):
        learned = [replace(shape, durable=current == "'true'")]
    elif key == "auto_delete" and current in ("'true'", "'false'"):
        learned = [replace(shape, auto_delete=current == "'true'")]
    elif key == "internal" and current in ("'true'", "'false'"):
        learned = [replace(shape, internal=current == "'true'")]
    elif key == "alternate-exchange":
        for value in _alternate_exchanges(current):
            arguments = {k: v for k, v in shape.arguments.items() if k != key}
            if value is not None:
                arguments[key] = value
            learned.append(replace(shape, arguments=arguments))
    return [candidate for candidate in learned if candidate != shape]


async def probe_exchange(
    connection: aio_pika.abc.AbstractConnection, name: str
) -> ExchangeShape | None:
    """The attributes of existing exchange `name`, confirmed by a declaration the broker
    accepted (a no-op on an exchange that has them); None when no declaration was accepted."""
    tried: list[ExchangeShape] = []
    waiting = [ExchangeShape()]
    while waiting and len(tried) < 16:
        shape = waiting.pop(0)
        if shape in tried:
            continue
        tried.append(shape)
        refusal = await _refusal(connection, **shape.declare(name))
        if refusal is None:
            return shape
        waiting[:0] = learn_from_refusal(shape, refusal)  # corrections first
    base = tried[-1] if tried else ExchangeShape()
    kinds = dict.fromkeys((base.type, "topic", "fanout", "headers", "direct"))
    for kind, durable, auto_delete, internal in itertools.product(
        kinds, (True, False), (False, True), (False, True)
    ):
        candidate = replace(
            base, type=kind, durable=durable, auto_delete=auto_delete, internal=internal
        )
        if candidate not in tried and await _try(connection, **candidate.declare(name)):
            return candidate
    return None


async def exchange_type(connection: aio_pika.abc.AbstractConnection, name: str) -> str:
    """The type of exchange `name`, declaring it durable/topic when it does not exist."""
    if name in BUILTIN_TYPES:
        return BUILTIN_TYPES[name]
    if not await _try(connection, name=name, passive=True):
        await _try(connection, name=name, type="topic", durable=True)
        log.info("exchange %r did not exist: declared durable topic", name)
        return "topic"
    shape = await probe_exchange(connection, name)
    return shape.type if shape is not None else "unknown"


async def declare_tap_queue(
    channel: aio_pika.abc.AbstractChannel, spec: TapSpec
) -> tuple[aio_pika.abc.AbstractQueue, str | None]:
    """Declare the bounded tap queue; an existing queue with other arguments is used as is."""
    return await declare_queue(channel, spec.queue, spec.arguments())


async def bind_everything(
    connection: aio_pika.abc.AbstractConnection,
    channel: aio_pika.abc.AbstractChannel,
    queue: aio_pika.abc.AbstractQueue,
    exchanges: tuple[str, ...],
) -> dict[str, str]:
    """Bind the tap queue to every exchange with the binding that receives all it routes."""
    found: dict[str, str] = {}
    for name in exchanges:
        kind = await exchange_type(connection, name)
        if kind not in CATCH_ALL:
            found[name] = f"{kind}: cannot receive every message (not bound)"
            log.error(
                "exchange %r is %s: only topic, fanout and headers can be recorded", name, kind
            )
            continue
        routing_key, arguments = CATCH_ALL[kind]
        await queue.bind(name, routing_key=routing_key, arguments=arguments)
        found[name] = kind
    return found

"""Publishing a replay so that its outcome is known: publisher confirms and `mandatory`.

A replay is sent with the stored property bytes (backend/amqp_wire.py `RawProperties`), so
nothing about the message changes but the replay headers. Outcomes:

- `delivered`: the broker confirmed it (basic.ack) and did not return it;
- `failed`: it was returned (no queue bound for the routing key; RabbitMQ sends basic.return
  before the ack of the same publish), nacked, or refused (the exchange does not exist, the
  properties are refused: the channel closes);
- `unknown`: the connection went, or no answer came in time, after the publish was written —
  it may have arrived.

aiormq matches a returned message to its publish by `message_id`, which a stored message may
lack or share with another; so this channel's returns are read here instead, matched by the
`x-eventscope-replay-id` header every replay carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import aiormq.abc
from pamqp import commands as spec

from eventscope.backend.amqp_session import connect
from eventscope.backend.amqp_wire import RawProperties

log = logging.getLogger(__name__)

REPLAY_ID_HEADER = "x-eventscope-replay-id"
CONFIRM_TIMEOUT = 15.0


Send = tuple[str, str, str, bytes, bytes]  # replay id, exchange, routing key, body, properties


@dataclass(frozen=True)
class Outcome:
    state: str  # delivered | failed | unknown
    result: str  # what happened, in words


class ReplayPublisher:
    """One connection and confirming channel, opened when first needed and reopened after a
    refusal; publishes are serialised (a replay is one message; bulk replays pace themselves)."""

    def __init__(self, amqp_url: str, connection_name: str = "eventscope-replay") -> None:
        self.amqp_url = amqp_url
        self.connection_name = connection_name
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aiormq.abc.AbstractChannel | None = None
        self._returned: dict[str, str] = {}
        self._lock = asyncio.Lock()

    async def _open(self) -> aiormq.abc.AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = await connect(self.amqp_url, self.connection_name)
            self._channel = None
        if self._channel is None or self._channel.is_closed:
            opened = await self._connection.channel(publisher_confirms=True)
            channel = await opened.get_underlay_channel()
            channel._on_return_frame = self._returns_of(channel)  # type: ignore[attr-defined]
            self._channel = channel
        return self._channel

    def _returns_of(self, channel: Any) -> Any:
        """Reads a returned message (the frames that follow basic.return) and notes it under
        its replay id, for the publish waiting on that id."""

        async def on_return(frame: spec.Basic.Return) -> None:
            header = await channel._Channel__get_content_header()
            message = await channel._read_content(frame, header)
            headers = message.header.properties.headers or {}
            replay_id = headers.get(REPLAY_ID_HEADER)
            if isinstance(replay_id, bytes):
                replay_id = replay_id.decode("utf-8", "replace")
            if isinstance(replay_id, str) and replay_id in self._returned:
                self._returned[replay_id] = f"{frame.reply_code} {frame.reply_text}"
            else:
                log.warning("a returned message without a known replay id: %r", frame)

        return on_return

    async def publish(
        self, replay_id: str, exchange: str, routing_key: str, body: bytes, raw_properties: bytes
    ) -> Outcome:
        """One replay; its outcome."""
        (outcome,) = await self.publish_many(
            [(replay_id, exchange, routing_key, body, raw_properties)]
        )
        return outcome

    async def publish_many(self, sends: list[Send]) -> list[Outcome]:
        """Several replays at once (a bulk replay's chunk: the window of outstanding
        confirms); their outcomes in the same order."""
        if not sends:
            return []
        async with self._lock:
            try:
                channel = await self._open()
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError) as exc:
                failed = Outcome("failed", f"the broker cannot be reached: {_describe(exc)}")
                return [failed] * len(sends)
            for send in sends:
                self._returned[send[0]] = ""
            try:
                return list(
                    await asyncio.gather(
                        *(self._publish(channel, *send, alone=len(sends) == 1) for send in sends)
                    )
                )
            finally:
                for send in sends:
                    self._returned.pop(send[0], None)

    async def _publish(
        self,
        channel: aiormq.abc.AbstractChannel,
        replay_id: str,
        exchange: str,
        routing_key: str,
        body: bytes,
        raw_properties: bytes,
        *,
        alone: bool,
    ) -> Outcome:
        try:
            properties = RawProperties(raw_properties)
        except ValueError as exc:
            return Outcome("failed", f"the stored properties cannot be sent: {exc}")
        try:
            confirmation = await channel.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=CONFIRM_TIMEOUT,
            )
        except aiormq.exceptions.PublishError as exc:  # returned, matched by aiormq itself
            frame = exc.args[1] if len(exc.args) > 1 else None
            code = getattr(frame, "reply_code", "")
            text = getattr(frame, "reply_text", "returned")
            return Outcome("failed", _unroutable(f"{code} {text}".strip(), exchange, routing_key))
        except aiormq.exceptions.ChannelInvalidStateError as exc:  # closed before it was sent
            self._channel = None
            return Outcome("failed", f"not sent: the channel was closed ({_describe(exc)})")
        except aiormq.exceptions.ChannelClosed as exc:
            self._channel = None
            if alone:
                return Outcome("failed", f"the broker refused the publish: {_describe(exc)}")
            return Outcome(  # one of the window was refused; the others may have arrived
                "unknown",
                f"the broker closed the channel while other replays were outstanding "
                f"({_describe(exc)}): it may have arrived",
            )
        except TimeoutError:
            await self._reset()
            return Outcome(
                "unknown", f"no confirmation within {CONFIRM_TIMEOUT:g} s: it may have arrived"
            )
        except (aiormq.exceptions.AMQPError, OSError) as exc:
            await self._reset()
            return Outcome(
                "unknown",
                f"the connection went during the publish ({_describe(exc)}): it may have arrived",
            )
        returned = self._returned.get(replay_id)
        if returned:
            return Outcome("failed", _unroutable(returned, exchange, routing_key))
        if isinstance(confirmation, spec.Basic.Ack):
            return Outcome("delivered", "confirmed by the broker")
        if isinstance(confirmation, spec.Basic.Nack):
            return Outcome("failed", "the broker nacked the publish (it could not take it)")
        return Outcome("unknown", f"unexpected answer from the broker: {confirmation!r}")

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        async with self._lock:
            await self._reset()


def _unroutable(reply: str, exchange: str, routing_key: str) -> str:
    where = f"queue {routing_key}" if exchange == "" else f"exchange {exchange} → {routing_key}"
    return f"returned by the broker ({reply}): nothing is bound to receive it at {where}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


__all__ = ["REPLAY_ID_HEADER", "Outcome", "ReplayPublisher", "Send"]

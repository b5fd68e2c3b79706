"""Bulk replays: the preview page, starting one (form and API), its progress page with the
websocket that keeps it current, cancelling. backend/replay_bulk.py does the work.

A selection comes from the query string (or the API's JSON): `id` (repeatable: selected
messages), `group` (a failure fingerprint of /dlq), every filter parameter of the timeline, and
`events=1` to take any matching event rather than the unresolved dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from litestar import Controller, Response, get, post, websocket
from litestar.di import NamedDependency
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    ValidationException,
    WebSocketDisconnect,
)
from litestar.params import FromPath
from litestar.response import Template

from eventscope.backend.filters import FilterError, multi, parse_filter
from eventscope.backend.redaction import Redactor
from eventscope.backend.replay import ReplayRefused
from eventscope.backend.replay_bulk import BulkReplays, Selection
from eventscope.backend.replay_targets import target_from_json
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.replay_batches import ACTIVE
from eventscope.web.auth import (
    Principal,
    operator_action,
    operator_only,
    origin_allowed,
    principal_of,
)
from eventscope.web.context import WebContext
from eventscope.web.display import iso
from eventscope.web.filtering import OWN_PARAMETERS, query, refuse_masked_values
from eventscope.web.replay_view import entry_json, settled_before
from eventscope.web.request import AnyRequest, AnySocket
from eventscope.web.templating import render

SELECTION = ("id", "group", "events", "reason", "state")
MAX_IDS = 10_000
BATCH_ENTRIES = 200
PUSH_EVERY = 0.5


def _bulk(web: WebContext) -> BulkReplays:
    return web.runtime.bulk


def selection_from(pairs: list[tuple[str, str]], mask: Redactor | None) -> Selection:
    """A selection from query pairs; FilterError naming a bad parameter."""
    ids: list[int] = []
    for key, value in pairs:
        if key == "id":
            if not value.isdigit() or len(value) > 18:
                raise FilterError("id", f"{value[:20]!r} is not an event number")
            ids.append(int(value))
    if len(ids) > MAX_IDS:
        raise FilterError("id", f"at most {MAX_IDS:,} selected at once; use a filter")
    grouped = multi((k, v) for k, v in pairs if k not in SELECTION)
    event_filter = parse_filter(grouped, ignore=OWN_PARAMETERS)
    refuse_masked_values(event_filter, mask)
    group = next((v for k, v in pairs if k == "group"), None)
    events = any(k == "events" and v in ("1", "true") for k, v in pairs)
    return Selection(
        ids=tuple(ids), filter=event_filter, fingerprint=group, dead_letters=not events
    )


def selection_pairs(selection: Selection) -> list[tuple[str, str]]:
    """The query pairs that name the selection again (the form's hidden fields)."""
    pairs = [("id", str(i)) for i in selection.ids]
    pairs += selection.filter.query_items()
    if selection.fingerprint:
        pairs.append(("group", selection.fingerprint))
    if not selection.dead_letters:
        pairs.append(("events", "1"))
    return pairs


def batch_json(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_id": batch["batch_id"],
        "state": batch["state"],
        "selection": batch["selection"],
        "target": (
            {"kind": batch["target_kind"], "name": batch["target_name"],
             "routing_key": batch["routing_key"]}
            if batch["target_kind"]
            else None
        ),
        "total": batch["total"],
        "done": batch["done"],
        "delivered": batch["delivered"],
        "failed": batch["failed"],
        "skipped": batch["skipped"],
        "rate": batch["rate"],
        "actor": batch["actor"],
        "reason": batch["reason"],
        "created_at": iso(batch["created_at"]),
        "finished_at": iso(batch["finished_at"]) if batch["finished_at"] else None,
    }  # fmt: skip


async def _start(
    web: WebContext, request: AnyRequest, principal: Principal, selection: Selection,
    reason: str | None, target: Any = None,
) -> str:  # fmt: skip
    try:
        return await _bulk(web).start(
            selection,
            actor=principal.name,
            role=principal.role,
            reason=reason,
            client=web.attempts.client(request.scope),
            target=target,
        )
    except ReplayRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None


async def _entries(
    store: EventStore, web: WebContext, batch_id: str, mask: Redactor | None
) -> list[dict[str, Any]]:
    entries = await store.replays.entries(BATCH_ENTRIES, batch_id=batch_id)
    settled = settled_before(web.settings.replay_quiet_seconds)
    return [entry_json(e, mask, settled) for e in entries]


async def _batch_or_404(store: EventStore, batch_id: str) -> dict[str, Any]:
    batch = await store.replay_batches.get(batch_id[:40])
    if batch is None:
        raise NotFoundException(f"No bulk replay {batch_id[:40]!r}.")
    return batch


class ReplayBatchPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/replays/new", guards=[operator_action])
    async def preview_page(self, request: AnyRequest, web: NamedDependency[WebContext]) -> Template:
        """How many, to where, allowed or not; a reason; Replay N."""
        pairs = list(request.query_params.multi_items())
        try:
            selection = selection_from(pairs, None)
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        preview = await _bulk(web).preview(selection)
        kept = [(k, v) for k, v in pairs if k not in ("id", "events")]
        back = ("/dlq?" if selection.dead_letters else "/?") + query(kept)
        return Template(
            "replay_bulk.html",
            context={
                "preview": preview,
                "selection": selection.describe(),
                "selection_dead_letters": selection.dead_letters,
                "hidden": selection_pairs(selection),
                "rate": web.settings.replay_rate,
                "back": back,
            },
        )

    @post("/replays/batches", guards=[operator_action], status_code=200)
    async def start_form(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
    ) -> Response[str]:
        form = await request.form()
        pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
        reason = next((v for k, v in pairs if k == "reason"), "").strip() or None
        try:
            selection = selection_from(pairs, None)
            batch_id = await _start(web, request, principal, selection, reason)
        except (FilterError, HTTPException) as exc:
            why = exc.detail if isinstance(exc, HTTPException) else str(exc)
            return Response(
                render(web.env, "_replay_result.html", entry=None, refused=why, event_id=None),
                media_type="text/html",
            )
        return Response("", headers={"HX-Redirect": f"/replays/batches/{batch_id}"})

    @get("/replays/batches/{batch_id:str}")
    async def batch_page(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        batch_id: FromPath[str],
    ) -> Template:
        batch = await _batch_or_404(store, batch_id)
        return Template(
            "replay_batch.html",
            context={
                "batch": batch,
                "active": batch["state"] in ACTIVE,
                "can_act": principal_of(request).can_act,
                "entries": await _entries(store, web, batch["batch_id"], mask),
                "limit": BATCH_ENTRIES,
            },
        )

    @post("/replays/batches/{batch_id:str}/cancel", guards=[operator_action], status_code=204)
    async def cancel_form(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        batch_id: FromPath[str],
    ) -> None:
        await _bulk(web).cancel(
            batch_id[:40],
            actor=principal.name,
            role=principal.role,
            client=web.attempts.client(request.scope),
        )


@websocket("/ws/replays/{batch_id:str}")
async def batch_socket(
    socket: AnySocket, web: NamedDependency[WebContext], batch_id: FromPath[str]
) -> None:
    """Sends the batch's progress fragment whenever it moves, until the batch ends."""
    if origin_allowed(socket.scope, web.settings.allowed_origins) is not True:
        await socket.close(code=4403, reason="origin not allowed")
        return
    await socket.accept()
    can_act = principal_of(socket).can_act
    last: tuple[Any, ...] | None = None
    receiver = asyncio.ensure_future(_until_closed(socket))
    try:
        while not receiver.done():
            batch = await web.store.replay_batches.get(batch_id[:40])
            if batch is None:
                break
            now = (batch["state"], batch["total"], batch["done"], batch["failed"])
            if now != last:
                last = now
                await socket.send_text(
                    render(web.env, "_batch_progress.html", batch=batch, can_act=can_act)
                )
            if batch["state"] not in ACTIVE:  # ended: its replays, as the page would list them
                mask = web.mask_for(principal_of(socket))
                entries = await _entries(web.store, web, batch["batch_id"], mask)
                await socket.send_text(
                    render(
                        web.env,
                        "_batch_entries.html",
                        entries=entries,
                        active=False,
                        limit=BATCH_ENTRIES,
                    )
                )
                break
            await asyncio.wait([receiver], timeout=PUSH_EVERY)
    finally:
        receiver.cancel()
        with contextlib.suppress(Exception):
            await socket.close()


async def _until_closed(socket: AnySocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, Exception):
        while True:
            await socket.receive_text()


class ReplayBatchesApi(Controller):
    path = "/api"
    tags = ("replays",)

    @get(
        "/replays/preview",
        guards=[operator_only],
        summary="Preview a bulk replay: how many, to which targets, allowed or not",
        description="The selection: `id` (repeatable), `group` (a /dlq fingerprint), any "
        "filter parameter, `events=1` for any matching event instead of unresolved dead "
        "letters. Read over at most 10,000 messages (`at_least`).",
    )
    async def preview(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
    ) -> dict[str, Any]:
        try:
            selection = selection_from(list(request.query_params.multi_items()), mask)
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        preview = await _bulk(web).preview(selection)
        return {
            "selection": selection.describe(),
            "count": preview.count,
            "at_least": preview.at_least,
            "targets": [
                {"target": label, "count": count, "allowed": allowed}
                for label, count, allowed in preview.targets
            ],
            "refusals": [{"reason": why, "count": count} for why, count in preview.refusals],
            "add_entries": preview.add_entries,
        }

    @post(
        "/dlq/replay",
        guards=[operator_action],
        status_code=202,
        summary="Start a bulk replay of a selection, a group or a filter",
        description='JSON `{"ids": [..]} | {"group": fingerprint, "filter": '
        '"routing_key=order.*&since=1h"} | {"filter": ..., "events": true}`, with '
        "`reason` (required) and an optional `target`. Bounded to what matches when it "
        "starts; answers with the batch (follow it at /api/replays/batches/{batch_id}).",
    )
    async def start(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise ValidationException("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ValidationException("send a JSON object")
        pairs: list[tuple[str, str]] = []
        ids = data.get("ids") or []
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ValidationException("ids must be a list of event numbers")
        pairs += [("id", str(i)) for i in ids]
        text = data.get("filter") or ""
        if not isinstance(text, str):
            raise ValidationException("filter is a query string, e.g. routing_key=order.*")
        from urllib.parse import parse_qsl

        pairs += parse_qsl(text, keep_blank_values=False)
        if isinstance(data.get("group"), str):
            pairs.append(("group", data["group"]))
        if data.get("events") is True:
            pairs.append(("events", "1"))
        try:
            selection = selection_from(pairs, None)
            target = target_from_json(data["target"]) if data.get("target") else None
        except (FilterError, ValueError) as exc:
            raise ValidationException(str(exc)) from None
        reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        batch_id = await _start(web, request, principal, selection, reason, target)
        return batch_json(await _batch_or_404(store, batch_id))

    @get("/replays/batches/{batch_id:str}", summary="One bulk replay: state and progress")
    async def batch(
        self, store: NamedDependency[EventStore], batch_id: FromPath[str]
    ) -> dict[str, Any]:
        return batch_json(await _batch_or_404(store, batch_id))

    @post(
        "/replays/batches/{batch_id:str}/cancel",
        guards=[operator_action],
        status_code=200,
        summary="Cancel a bulk replay (it stops after the chunk in flight)",
    )
    async def cancel(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        batch_id: FromPath[str],
    ) -> dict[str, Any]:
        batch = await _batch_or_404(store, batch_id)
        if not await _bulk(web).cancel(
            batch["batch_id"], actor=principal.name, role=principal.role,
            client=web.attempts.client(request.scope),
        ):  # fmt: skip
            raise HTTPException(status_code=409, detail=f"bulk replay is {batch['state']}")
        return batch_json(await _batch_or_404(store, batch_id))

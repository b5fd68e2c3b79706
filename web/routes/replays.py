"""Replaying and discarding: the preview page and its form, the ledger page, and their JSON API.

Every action is an operator action (`operator_action`: operators only, refused in read-only
mode) and goes through backend/replay.py, which checks the target against the allowlist,
writes the ledger and the audit log, and publishes with confirms. The pages answer an action
with a fragment saying what happened (a refusal too: the form stays usable); the API answers
with status codes (404 no such event, 409 refused or in flight, 422 an edit that cannot be
sent) and the ledger entry.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import FromPath
from litestar.response import Template

from eventscope.backend.redaction import Redactor
from eventscope.backend.replay import Replayer, ReplayRefused, is_dead_letter
from eventscope.backend.replay_targets import Target, target_from_json
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.store.paging import clamp_limit
from eventscope.web.auth import Principal, operator_action, operator_only
from eventscope.web.context import WebContext
from eventscope.web.dead_letter_view import death_context
from eventscope.web.dependencies import event_or_404
from eventscope.web.event_view import masked_row, summary
from eventscope.web.replay_view import (
    body_preview,
    entry_json,
    plan_json,
    settled_before,
    state_json,
)
from eventscope.web.request import AnyRequest
from eventscope.web.routes.aggregates import replay_what_if
from eventscope.web.routes.replay_batches import batch_json

MAX_REQUEST = 8 * 1024 * 1024  # an edited body travels in the request
LEDGER_PAGE = 100


def _replayer(web: WebContext) -> Replayer:
    return web.runtime.replayer


def _settled(web: WebContext) -> dt.datetime:
    return settled_before(web.settings.replay_quiet_seconds)


class Edits:
    """What a replay request asks for beyond the defaults: target, body, headers, reason."""

    def __init__(
        self,
        target: Target | None = None,
        body: bytes | None = None,
        headers: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> None:
        self.target, self.body, self.headers, self.reason = target, body, headers, reason


def _target_choice(original: Target | None, choice: str, form: dict[str, str]) -> Target | None:
    """The form's target: the default (None), the original exchange and key, or one typed."""
    if choice == "exchange":
        return target_from_json(
            {
                "kind": "exchange",
                "name": form.get("exchange", ""),
                "routing_key": form.get("routing_key", ""),
            }
        )
    if choice == "queue":
        return target_from_json({"kind": "queue", "name": form.get("queue", "")})
    if choice == "original":
        return original
    return None


async def _json_edits(request: AnyRequest) -> Edits:
    raw = await request.body()
    if len(raw) > MAX_REQUEST:
        raise HTTPException(status_code=413, detail="request too large")
    if not raw.strip():
        return Edits()
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationException("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValidationException("send a JSON object: {target, body, headers, reason}")
    try:
        target = target_from_json(data["target"]) if data.get("target") is not None else None
    except ValueError as exc:
        raise ValidationException(str(exc)) from None
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    headers = data.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise ValidationException("headers must be an object of name: value")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationException("reason must be text")
    return Edits(
        target, body.encode("utf-8", "surrogatepass") if body is not None else None, headers, reason
    )


async def _replay(
    web: WebContext, request: AnyRequest, principal: Principal, event_id: int, edits: Edits
) -> dict[str, Any]:
    try:
        return await _replayer(web).replay(
            event_id,
            actor=principal.name,
            role=principal.role,
            reason=edits.reason,
            client=web.attempts.client(request.scope),
            target=edits.target,
            body=edits.body,
            headers=edits.headers,
        )
    except ReplayRefused as exc:
        if exc.status == 404:
            raise NotFoundException(str(exc)) from None
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None


async def dead_letter_detail(
    store: EventStore, web: WebContext, row: dict[str, Any], mask: Redactor | None
) -> dict[str, Any]:
    """A dead letter with its failure, x-death history, state and earlier replays."""
    event_id = int(row["id"])
    replays = await store.replays.entries(LEDGER_PAGE, event_id=event_id)
    state = (await store.replays.states([event_id])).get(event_id)
    now = _settled(web)
    plan = await _replayer(web).plan(event_id, row=row) if mask is None else None  # operators
    return {
        "id": event_id,
        "death": death_context(row, mask, web.settings.error_headers),
        "state": state_json(state, replays[0] if replays else None, now),
        "replays": [entry_json(e, mask, now) for e in replays],
        "preview": plan_json(plan, mask) if plan is not None else None,
    }


class ReplaysApi(Controller):
    path = "/api"
    tags = ("replays",)

    @get(
        "/dlq/{event_id:int}",
        summary="One dead letter: its failure, x-death history, state and earlier replays",
    )
    async def dead_letter(
        self,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        row = await event_or_404(store, event_id)
        if not is_dead_letter(row):
            raise NotFoundException(f"event {event_id} is not a dead letter")
        detail = await dead_letter_detail(store, web, row, mask)
        return {**detail, "event": summary(row, mask)}

    @get(
        "/events/{event_id:int}/replay",
        guards=[operator_only],
        summary="Preview a replay (operators): target, whether it is allowed, what is sent",
        description="Query `kind`, `name`, `routing_key` name another target than the default.",
    )
    async def preview(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        params = request.query_params
        target = None
        if params.get("kind"):
            try:
                target = target_from_json(
                    {
                        "kind": params.get("kind"),
                        "name": params.get("name", ""),
                        "routing_key": params.get("routing_key", ""),
                    }
                )
            except ValueError as exc:
                raise ValidationException(str(exc)) from None
        plan = await _replayer(web).plan(event_id, target=target)
        if plan is None:
            raise NotFoundException(f"No event with id {event_id}.")
        answer = plan_json(plan, mask)
        if plan.dead_letter:
            row = await event_or_404(web.store, event_id)
            answer["aggregate_what_if"] = await replay_what_if(web, row, plan.body)
        return answer

    @post(
        ["/dlq/{event_id:int}/replay", "/events/{event_id:int}/replay"],
        guards=[operator_action],
        status_code=201,
        summary="Replay one stored message (a dead letter or any event)",
        description='Optional JSON `{"target": {"kind": "exchange"|"queue", "name": '
        '…, "routing_key": …}, "body": text or JSON, "headers": {name: value}, '
        '"reason": text}`. Answers with the ledger entry: `state` delivered, failed (with '
        "`result` saying why) or unknown. 409 when the target is not allowlisted, the body "
        "was stored cut, or a replay of it is in flight.",
    )
    async def replay(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        edits = await _json_edits(request)
        entry = await _replay(web, request, principal, event_id, edits)
        return entry_json(entry, None, _settled(web))

    @post(
        ["/dlq/{event_id:int}/discard", "/dlq/{event_id:int}/restore"],
        guards=[operator_action],
        status_code=200,
        summary="Discard a dead letter (archived, restorable), or restore a discarded one",
    )
    async def discard_or_restore(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        event_id: FromPath[int],
    ) -> dict[str, Any]:
        action = "discard" if request.url.path.endswith("/discard") else "restore"
        edits = await _json_edits(request)
        await _act(web, request, principal, event_id, action, edits.reason)
        return {"id": event_id, "state": "discarded" if action == "discard" else "unresolved"}

    @get(
        "/replays",
        summary="The replay ledger, newest first",
        description="`before` (a ledger id) pages; `event_id` limits it to one message.",
    )
    async def ledger(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
    ) -> dict[str, Any]:
        limit, before, event_id = _ledger_params(request)
        entries = await store.replays.entries(limit, before=before, event_id=event_id)
        now = _settled(web)
        return {
            "items": [entry_json(e, mask, now) for e in entries],
            "before": entries[-1]["id"] if len(entries) == limit else None,
        }


def _ledger_params(request: AnyRequest) -> tuple[int, int | None, int | None]:
    params = request.query_params
    try:
        limit = clamp_limit(int(params["limit"]) if params.get("limit") else None, LEDGER_PAGE)
        before = int(params["before"]) if params.get("before") else None
        event_id = int(params["event_id"]) if params.get("event_id") else None
    except ValueError:
        raise ValidationException("limit, before and event_id are whole numbers") from None
    return limit, before, event_id


async def _act(
    web: WebContext,
    request: AnyRequest,
    principal: Principal,
    event_id: int,
    action: str,
    reason: str | None,
) -> None:
    replayer = _replayer(web)
    act = replayer.discard if action == "discard" else replayer.restore
    try:
        await act(
            event_id,
            actor=principal.name,
            role=principal.role,
            reason=reason,
            client=web.attempts.client(request.scope),
        )
    except ReplayRefused as exc:
        if exc.status == 404:
            raise NotFoundException(str(exc)) from None
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None


class ReplayPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/events/{event_id:int}/replay", guards=[operator_action])
    async def replay_page(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        event_id: FromPath[int],
    ) -> Template:
        """The preview: target choices, whether each is allowed, the body, a reason, Replay."""
        row = await event_or_404(store, event_id)
        params = dict(request.query_params.items())
        choice = params.get("choice", "default")
        replayer = _replayer(web)
        default_plan = await replayer.plan(event_id, row=row)
        assert default_plan is not None
        error = None
        try:
            target = _target_choice(default_plan.proposal.original, choice, params)
        except ValueError as exc:
            target, error = None, str(exc)
        plan = await replayer.plan(event_id, row=row, target=target) if target else default_plan
        assert plan is not None
        replays = await store.replays.entries(20, event_id=event_id)
        now = _settled(web)
        what_if = await replay_what_if(web, row, plan.body) if plan.dead_letter else None
        context = {
            "what_if": what_if,
            "event": masked_row(row, None),
            "dead_letter": is_dead_letter(row),
            "plan": plan_json(plan, None),
            "body_text": body_preview(plan),
            "choice": choice,
            "form": params,
            "target_error": error,
            "replays": [entry_json(e, None, now) for e in replays],
            "allowlist": replayer.allowlist.entries,
        }
        return Template("replay.html", context=context)

    @post("/events/{event_id:int}/replay", guards=[operator_action], status_code=200)
    async def replay_form(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        event_id: FromPath[int],
    ) -> Template:
        """The form's Replay: a fragment with the ledger entry, or why it was refused."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        replayer = _replayer(web)
        context: dict[str, Any] = {"entry": None, "refused": None, "event_id": event_id}
        try:
            base = await replayer.plan(event_id)
            if base is None:
                raise NotFoundException(f"No event with id {event_id}.")
            target = _target_choice(base.proposal.original, form.get("choice", "default"), form)
            body = form["body"].encode("utf-8", "surrogatepass") if form.get("edit_body") else None
            edits = Edits(target, body, None, (form.get("reason") or "").strip() or None)
            entry = await _replay(web, request, principal, event_id, edits)
            context["entry"] = entry_json(entry, None, _settled(web))
        except ValueError as exc:
            context["refused"] = str(exc)
        except HTTPException as exc:
            if exc.status_code == 404:
                raise
            context["refused"] = exc.detail
        return Template("_replay_result.html", context=context)

    @post(
        ["/dlq/{event_id:int}/discard", "/dlq/{event_id:int}/restore"],
        guards=[operator_action],
        status_code=200,
    )
    async def state_form(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
        event_id: FromPath[int],
    ) -> Response[str]:
        """Discard or restore from a page; the page reloads to show the new state."""
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        action = "discard" if request.url.path.endswith("/discard") else "restore"
        await _act(
            web, request, principal, event_id, action, (form.get("reason") or "").strip() or None
        )
        return Response("", status_code=200, headers={"HX-Refresh": "true"})

    @get("/replays")
    async def ledger_page(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        web: NamedDependency[WebContext],
        mask: NamedDependency[Redactor | None],
    ) -> Template:
        limit, before, event_id = _ledger_params(request)
        entries = await store.replays.entries(limit, before=before, event_id=event_id)
        now = _settled(web)
        return Template(
            "replays.html",
            context={
                "entries": [entry_json(e, mask, now) for e in entries],
                "batches": [batch_json(b) for b in await store.replay_batches.newest(10)]
                if before is None and event_id is None
                else [],
                "older": entries[-1]["id"] if len(entries) == limit else None,
                "event_id": event_id,
                "before": before,
            },
        )

"""Publishing a new event (operators): the form (`/publish`) and `POST /api/publish`. The
message goes out through backend/new_event.py: allowlisted targets only, confirms and
`mandatory`, the replay ledger and the audit log."""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Template

from eventscope.backend.new_event import NewEvent, publish_new
from eventscope.backend.replay import ReplayRefused
from eventscope.backend.replay_targets import target_from_json
from eventscope.web.auth import Principal, operator_action
from eventscope.web.context import WebContext
from eventscope.web.replay_view import entry_json, settled_before
from eventscope.web.request import AnyRequest

MAX_REQUEST = 9 * 1024 * 1024
TEXT_FIELDS = ("content_type", "message_id", "correlation_id", "type")


def new_event_from(data: dict[str, Any]) -> NewEvent:
    """The event a form or a JSON request describes; ValueError saying what is wrong."""
    target = target_from_json(
        {
            "kind": data.get("kind") or "exchange",
            "name": data.get("name", data.get("exchange", "")),
            "routing_key": data.get("routing_key", ""),
        }
    )
    body = data.get("body", "")
    if not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    headers = data.get("headers") or {}
    if isinstance(headers, str):
        try:
            headers = json.loads(headers) if headers.strip() else {}
        except ValueError:
            raise ValueError('headers: write a JSON object, e.g. {"x-tenant": "acme"}') from None
    if not isinstance(headers, dict):
        raise ValueError("headers: a JSON object of name: value")
    texts = {}
    for name in TEXT_FIELDS:
        value = data.get(name, "application/json" if name == "content_type" else None)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: text")
        texts[name] = value.strip() if isinstance(value, str) and value.strip() else None
    return NewEvent(
        target=target,
        body=body.encode("utf-8", "surrogatepass"),
        headers=headers,
        content_type=texts["content_type"],
        message_id=texts["message_id"],
        correlation_id=texts["correlation_id"],
        type=texts["type"],
    )


async def _publish(
    web: WebContext, request: AnyRequest, principal: Principal, data: dict[str, Any]
) -> dict[str, Any]:
    try:
        event = new_event_from(data)
    except ValueError as exc:
        raise ValidationException(str(exc)) from None
    reason = data.get("reason") if isinstance(data.get("reason"), str) else None
    try:
        entry = await publish_new(
            web.runtime.replayer, event, actor=principal.name, role=principal.role,
            reason=(reason or "").strip() or None, client=web.attempts.client(request.scope),
        )  # fmt: skip
    except ReplayRefused as exc:
        raise HTTPException(status_code=exc.status, detail=str(exc)) from None
    return entry_json(entry, None, settled_before(web.settings.replay_quiet_seconds))


class PublishPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/publish", guards=[operator_action])
    async def form(self, request: AnyRequest, web: NamedDependency[WebContext]) -> Template:
        params = dict(request.query_params.items())
        return Template(
            "publish.html",
            context={
                "exchanges": web.settings.exchanges,
                "allowlist": web.runtime.replayer.allowlist.entries,
                "form": params,
            },
        )

    @post("/publish", guards=[operator_action], status_code=200)
    async def submit(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
    ) -> Template:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        context: dict[str, Any] = {"entry": None, "refused": None, "event_id": None}
        try:
            context["entry"] = await _publish(web, request, principal, form)
        except HTTPException as exc:
            context["refused"] = exc.detail
        return Template("_replay_result.html", context=context)


class PublishApi(Controller):
    path = "/api"
    tags = ("replays",)

    @post(
        "/publish",
        guards=[operator_action],
        status_code=201,
        summary="Publish a new event to an allowlisted target (confirms, mandatory, ledger)",
        description='JSON `{"kind": "exchange"|"queue", "name": …, "routing_key": …, '
        '"body": text or JSON, "content_type", "message_id", "correlation_id", "type", '
        '"headers": {name: value}, "reason"}`. Answers with the ledger entry (`event_id` 0).',
    )
    async def publish(
        self,
        request: AnyRequest,
        web: NamedDependency[WebContext],
        principal: NamedDependency[Principal],
    ) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_REQUEST:
            raise HTTPException(status_code=413, detail="request too large")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ValidationException("the request body is not JSON") from None
        if not isinstance(data, dict):
            raise ValidationException("send a JSON object")
        return await _publish(web, request, principal, data)

"""Dead letters, grouped by failure (`/dlq`, `/api/dlq`): the newest recorded dead letters the
filter selects, grouped by queue, reason, routing key and normalised error
(backend/dead_letters.py); `?group=<fingerprint>` lists one group's members.

`?state=unresolved` (the default) shows the dead letters nobody acted on; `?state=handled`
those replayed, being replayed or discarded (web/routes/replays.py acts on them).
Error texts are bus data and may carry secrets: viewers see them masked like any text column.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.response import Template

from eventscope.backend.dead_letters import Failure, FailureGroup, failures_and_groups
from eventscope.backend.filters import EventFilter, FilterError
from eventscope.backend.redaction import Redactor
from eventscope.backend.settings import Settings
from eventscope.backend.store.dead_letters import MAX_SCAN
from eventscope.backend.store.eventstore import EventStore
from eventscope.backend.trace import role_of
from eventscope.web.auth import Principal
from eventscope.web.dead_letter_view import failure_json, group_json
from eventscope.web.event_view import in_worker
from eventscope.web.filtering import filter_context, list_filter, query
from eventscope.web.request import AnyRequest

_OWN = ("group", "state")
VIEWS = ("unresolved", "handled")
MAX_GROUPS = 500
MAX_MEMBERS = 500


@dataclass
class Read:
    """The dead letters one page load groups: those in the chosen state, and the others'
    count."""

    failures: list[Failure]
    groups: list[FailureGroup]
    more: bool
    rows: dict[int, dict[str, Any]]
    states: dict[int, dict[str, Any]]
    other: int  # dead letters of the other view (handled when unresolved is shown, and back)


async def _read(store: EventStore, settings: Settings, f: EventFilter, view: str) -> Read:
    found = await store.dead_letters.newest(f, MAX_SCAN)
    held = await store.dead_letters.held_copies(found.rows)  # shown as the copy eventscope holds
    kept = [r for r in found.rows if int(r["id"]) not in held]
    states = await store.replays.states([int(r["id"]) for r in kept])
    handled = [r for r in kept if int(r["id"]) in states]
    unresolved = [r for r in kept if int(r["id"]) not in states]
    chosen, other = (handled, unresolved) if view == "handled" else (unresolved, handled)
    by_id = {int(r["id"]): r for r in chosen}
    failures, groups = await in_worker(failures_and_groups, chosen, settings.error_headers)
    others = sum(1 for r in other if role_of(r) == "dead_letter")
    return Read(failures, groups, found.more, by_id, states, others)


def _view(request: AnyRequest) -> str:
    view = request.query_params.get("state") or "unresolved"
    if view not in VIEWS:
        raise FilterError("state", f"{view[:20]!r} is not one of {', '.join(VIEWS)}")
    return view


def _members(read: Read, fingerprint: str, mask: Any) -> list[dict[str, Any]]:
    chosen = [f for f in read.failures if f.fingerprint == fingerprint][:MAX_MEMBERS]
    return [
        {
            **failure_json(f, read.rows.get(f.row_id), mask),
            "state": read.states.get(f.row_id, {}).get("state", "unresolved"),
        }
        for f in chosen
    ]


class DeadLetterPages(Controller):
    path = "/"

    @get("/dlq")
    async def dead_letters(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
        principal: NamedDependency[Principal],
    ) -> Template:
        """Groups of failures; with `?group=`, that group's dead letters."""
        context: dict[str, Any] = {"filter_error": None, "groups": [], "scan": MAX_SCAN}
        try:
            event_filter = list_filter(request, mask, _OWN)
            view = _view(request)
        except FilterError as exc:
            context.update(filter_error=str(exc), view="unresolved", **filter_context(None))
            return Template("dlq.html", context=context, status_code=400)
        context.update(filter_context(event_filter))
        read = await _read(store, settings, event_filter, view)
        now = dt.datetime.now(dt.UTC)
        fingerprint = request.query_params.get("group")
        chosen = next((g for g in read.groups if g.fingerprint == fingerprint), None)
        own = [("state", view)] if view != "unresolved" else []
        context.update(
            groups=[
                {
                    **group_json(g, mask, now),
                    "members_query": query([("group", g.fingerprint), *own]),
                }
                for g in read.groups[:MAX_GROUPS]
            ],
            groups_total=len(read.groups),
            dead_letters=len(read.failures),
            more=read.more,
            view=view,
            other=read.other,
            view_query=query(own),
            can_act=principal.can_act,
            group=group_json(chosen, mask, now) if chosen else None,
            group_missing=fingerprint is not None and chosen is None,
            members=_members(read, chosen.fingerprint, mask) if chosen else [],
            group_pairs=[("group", chosen.fingerprint), *event_filter.query_items()]
            if chosen
            else [],
            group_query=query([("group", chosen.fingerprint), *event_filter.query_items()])
            if chosen
            else "",
        )
        headers = {}
        if request.headers.get("hx-request"):  # typed in the filter bar: a clean URL to share
            headers["HX-Push-Url"] = "/dlq" + (
                f"?{context['filter_query']}" if context["filter_query"] else ""
            )
        return Template("dlq.html", context=context, headers=headers)


class DeadLettersApi(Controller):
    path = "/api"
    tags = ("dead letters",)

    @get(
        "/dlq",
        summary="Recorded dead letters grouped by failure, or one group's members",
        description="The newest matching dead letters (every filter parameter of /api/events "
        "applies; TTL retry copies are left out), grouped by queue, reason, original routing "
        "key and error text with ids and numbers normalised. `more` says the newest "
        f"{MAX_SCAN:,} were grouped and older ones exist. With `group=<fingerprint>`, that "
        "group's dead letters, newest first.",
    )
    async def dead_letters(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
    ) -> dict[str, Any]:
        try:
            event_filter = list_filter(request, mask, _OWN)
            view = _view(request)
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        read = await _read(store, settings, event_filter, view)
        now = dt.datetime.now(dt.UTC)
        fingerprint = request.query_params.get("group")
        answer: dict[str, Any] = {
            "state": view,
            "dead_letters": len(read.failures),
            "more": read.more,
            "other": read.other,
            "groups": [group_json(g, mask, now) for g in read.groups[:MAX_GROUPS]],
        }
        if fingerprint is not None:
            answer["items"] = _members(read, fingerprint, mask)
        return answer

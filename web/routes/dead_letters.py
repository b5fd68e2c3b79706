"""Dead letters, grouped by failure (`/dlq`, `/api/dlq`): the newest recorded dead letters the
filter selects, grouped by queue, reason, routing key and normalised error
(backend/dead_letters.py); `?group=<fingerprint>` lists one group's members.

Read-only for now: replaying and discarding come with dead-letter queues eventscope owns.
Error texts are bus data and may carry secrets: viewers see them masked like any text column.
"""

from __future__ import annotations

import datetime as dt
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
from eventscope.web.dead_letter_view import failure_json, group_json
from eventscope.web.event_view import in_worker
from eventscope.web.filtering import filter_context, list_filter, query
from eventscope.web.request import AnyRequest

_OWN = ("group",)
MAX_GROUPS = 500
MAX_MEMBERS = 500


async def _read(
    store: EventStore, settings: Settings, f: EventFilter
) -> tuple[list[Failure], list[FailureGroup], bool, dict[int, dict[str, Any]]]:
    found = await store.dead_letters.newest(f, MAX_SCAN)
    rows = {int(r["id"]): r for r in found.rows}
    failures, groups = await in_worker(failures_and_groups, found.rows, settings.error_headers)
    return failures, groups, found.more, rows


def _members(
    failures: list[Failure], fingerprint: str, rows: dict[int, dict[str, Any]], mask: Any
) -> list[dict[str, Any]]:
    chosen = [f for f in failures if f.fingerprint == fingerprint][:MAX_MEMBERS]
    return [failure_json(f, rows.get(f.row_id), mask) for f in chosen]


class DeadLetterPages(Controller):
    path = "/"

    @get("/dlq")
    async def dead_letters(
        self,
        request: AnyRequest,
        store: NamedDependency[EventStore],
        settings: NamedDependency[Settings],
        mask: NamedDependency[Redactor | None],
    ) -> Template:
        """Groups of failures; with `?group=`, that group's dead letters."""
        context: dict[str, Any] = {"filter_error": None, "groups": [], "scan": MAX_SCAN}
        try:
            event_filter = list_filter(request, mask, _OWN)
        except FilterError as exc:
            context.update(filter_error=str(exc), **filter_context(None))
            return Template("dlq.html", context=context, status_code=400)
        context.update(filter_context(event_filter))
        failures, groups, more, rows = await _read(store, settings, event_filter)
        now = dt.datetime.now(dt.UTC)
        fingerprint = request.query_params.get("group")
        chosen = next((g for g in groups if g.fingerprint == fingerprint), None)
        context.update(
            groups=[
                {**group_json(g, mask, now), "members_query": query([("group", g.fingerprint)])}
                for g in groups[:MAX_GROUPS]
            ],
            groups_total=len(groups),
            dead_letters=len(failures),
            more=more,
            group=group_json(chosen, mask, now) if chosen else None,
            group_missing=fingerprint is not None and chosen is None,
            members=_members(failures, chosen.fingerprint, rows, mask) if chosen else [],
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
        except FilterError as exc:
            raise ValidationException(str(exc)) from None
        failures, groups, more, rows = await _read(store, settings, event_filter)
        now = dt.datetime.now(dt.UTC)
        fingerprint = request.query_params.get("group")
        answer: dict[str, Any] = {
            "dead_letters": len(failures),
            "more": more,
            "groups": [group_json(g, mask, now) for g in groups[:MAX_GROUPS]],
        }
        if fingerprint is not None:
            answer["items"] = _members(failures, fingerprint, rows, mask)
        return answer

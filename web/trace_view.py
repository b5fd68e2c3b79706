"""A trace (backend/trace.py) as the page and the API present it: masked for viewers, times
as offsets, lanes as SVG geometry. Pure; one shape feeds both renderings."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

from eventscope.backend.redaction import Redactor
from eventscope.backend.store.trace import TracePage, TraceSummary
from eventscope.backend.trace import Lanes, Node, Step, Trace, build
from eventscope.web.display import iso
from eventscope.web.event_view import masked_row, shown, summary

FIRST_PAGE = 300  # events the trace page opens with; the rest load on scroll
ROW_HEIGHT = 18  # px, one waterfall row (the SVG cells are drawn to it)
BAR_WIDTH = 120  # px, the waterfall's time bar
MAX_TREE_INDENT = 24  # deeper nodes are drawn at this indent and say their depth
OFF_LOOP_HEADERS = 64 * 1024  # x-death headers parsed in a worker thread past this size


def lane_width(lanes: int) -> int:
    """Narrower lanes when there are many, so a dozen services still fit a screen."""
    return 100 if lanes <= 3 else 80 if lanes <= 6 else 56 if lanes <= 10 else 40


def duration_text(value: dt.timedelta | None) -> str:
    """A short, exact-enough duration: 0 ms, 350 ms, 1.204 s, 2 min 05 s, 3 h 07 min, 4 d 2 h."""
    if value is None:
        return "—"
    sign = "−" if value < dt.timedelta(0) else ""
    micros = abs(value) // dt.timedelta(microseconds=1)
    if micros < 1000:
        return f"{sign}{micros / 1000:.3g} ms" if micros else "0 ms"
    if micros < 1_000_000:
        return f"{sign}{micros // 1000} ms"
    seconds = micros / 1_000_000
    if seconds < 60:
        return f"{sign}{seconds:.3f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{sign}{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{sign}{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{sign}{whole // 86400} d {whole % 86400 // 3600} h"


def _ms(value: dt.timedelta | None) -> float | None:
    return None if value is None else value / dt.timedelta(milliseconds=1)


def masked(value: str | None, mask: Redactor | None) -> str | None:
    """A service (source) name as this reader may see it."""
    return shown("source", value, mask)


async def build_trace(page: TracePage) -> tuple[Trace, Lanes]:
    """The trace of one page, lanes laid out from the whole correlation's services. Parsing
    large forged x-death headers happens in a worker thread."""
    lanes = Lanes.of((s.source, s.events) for s in page.summary.services)

    def work() -> Trace:
        return build(
            page.rows,
            lanes=lanes,
            first_at=page.summary.first_at,
            previous_at=page.previous_at,
            outside=page.outside,
        )

    heavy = sum(len(r.get("death_headers") or "") for r in (*page.rows, *page.outside))
    trace = await asyncio.to_thread(work) if heavy > OFF_LOOP_HEADERS else work()
    return trace, lanes


def summary_json(s: TraceSummary, mask: Redactor | None) -> dict[str, Any]:
    return {
        "events": s.events,
        "first_at": iso(s.first_at) if s.first_at else None,
        "last_at": iso(s.last_at) if s.last_at else None,
        "duration_ms": _ms(s.duration),
        "services": [
            {
                "source": masked(service.source, mask),
                "events": service.events,
                "first_at": iso(service.first_at) if service.first_at else None,
            }
            for service in s.services
        ],
        "services_total": s.services_total,
        "dead_letters": s.dead_letters,
        "retries": s.retries,
        "exact": not s.capped,
    }


def lanes_json(lanes: Lanes, mask: Redactor | None) -> list[dict[str, Any]]:
    return [
        {"service": masked(lane.label, mask), "kind": lane.kind, "events": lane.events}
        for lane in lanes.lanes
    ]


def step_json(step: Step, mask: Redactor | None) -> dict[str, Any]:
    return {
        **summary(step.row, mask),
        "role": step.role,
        "offset_ms": _ms(step.offset),
        "gap_ms": _ms(step.gap),
        "long_gap": step.long_gap,
        "lane": step.lane,
        "cause": step.cause,
        "copy_of": step.copy_of,
        "orphan": step.orphan,
        "self_caused": step.self_caused,
        "retry_count": step.retry,
    }


def node_json(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "depth": node.depth,
        "parent": node.parent,
        "orphan": node.orphan,
        "cycle": node.cycle,
        "cause_elsewhere": node.elsewhere,
    }


@dataclass(frozen=True)
class Geometry:
    """Where a row's marks go in the lanes SVG and the time bar (px)."""

    width: int
    lane_xs: list[int]
    x: int
    cause_x: int | None
    bar_x: float
    bar_from: float | None


def geometry(step: Step, lanes: Lanes, duration: dt.timedelta, previous: Step | None) -> Geometry:
    count = max(len(lanes.lanes), step.lane + 1, (step.cause_lane or 0) + 1)
    width = lane_width(len(lanes.lanes))
    xs = [i * width + width // 2 for i in range(count)]

    def bar(offset: dt.timedelta) -> float:
        if duration <= dt.timedelta(0):
            return 2.0
        share = min(1.0, max(0.0, offset / duration))
        return round(2 + share * (BAR_WIDTH - 4), 1)

    return Geometry(
        width=count * width,
        lane_xs=xs,
        x=xs[step.lane],
        cause_x=xs[step.cause_lane] if step.cause_lane is not None else None,
        bar_x=bar(step.offset),
        bar_from=bar(previous.offset) if previous is not None else None,
    )


def step_context(
    trace: Trace, lanes: Lanes, s: TraceSummary, mask: Redactor | None
) -> list[dict[str, Any]]:
    """What a waterfall row shows: the masked row, offsets as text, its marks."""
    out = []
    previous: Step | None = None
    for step in trace.steps:
        row = masked_row(step.row, mask)
        out.append(
            {
                "id": step.id,
                "e": row,
                "role": step.role,
                "at": iso(step.row.get("event_at") or step.row.get("received_at")),
                "occurred": step.row.get("occurred_at") is not None,
                "offset": "+" + duration_text(step.offset),
                "gap": duration_text(step.gap) if step.gap is not None else "",
                "long_gap": step.long_gap,
                "cause": step.cause,
                "copy_of": step.copy_of,
                "orphan": step.orphan,
                "self_caused": step.self_caused,
                "retry": step.retry,
                "causation_id": row.get("causation_id"),
                "geo": geometry(step, lanes, s.duration, previous),
            }
        )
        previous = step
    return out


def tree_context(trace: Trace, mask: Redactor | None) -> list[dict[str, Any]]:
    roles = {step.id: step.role for step in trace.steps}
    return [
        {
            "node": node,
            "e": masked_row(trace.by_id[node.id], mask),
            "role": roles.get(node.id, "event"),
            "indent": min(node.depth, MAX_TREE_INDENT),
        }
        for node in trace.tree
        if node.id in trace.by_id
    ]


def lanes_context(lanes: Lanes, mask: Redactor | None) -> dict[str, Any]:
    width = lane_width(len(lanes.lanes))
    return {
        "width": width,
        "names": [
            {"label": masked(lane.label, mask), "kind": lane.kind, "events": lane.events}
            for lane in lanes.lanes
        ],
    }

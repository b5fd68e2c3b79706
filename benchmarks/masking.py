"""Masking cost for viewers: does it grow linearly with the body, and is it bounded?

Each workload is a body a publisher could send, at growing sizes. For each size it prints the
time of what a viewer's request does with it (the detail page's context, the body as the page
renders it through `bus_text`, and the API's JSON) and of a baseline in the same run: one plain
linear regex pass over the same text (`.` matched at every character). The ratio (viewer /
baseline) stays flat when the work is linear; it doubles with every doubling of the size when it
is quadratic; it falls past 256 KiB where a viewer's body is cut. No assertion: read the shape.
Run it against another checkout with PYTHONPATH=that/checkout.

    .venv/bin/python benchmarks/masking.py
    .venv/bin/python benchmarks/masking.py --max-kib 1024 --budget 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import time
from collections.abc import Callable
from typing import Any

from eventscope.backend.envelope import Delivery, to_row
from eventscope.backend.redaction import Redactor
from eventscope.web.display import bus_text
from eventscope.web.event_view import detail, page_context

BASELINE = re.compile(r".", re.S)


def _fill(unit: bytes, size: int) -> bytes:
    return (unit * (size // len(unit) + 1))[:size]


def _json(unit: bytes, size: int) -> bytes:
    """A JSON body (NaN included, as Python's json accepts it) holding `unit` repeated."""
    inner = _fill(unit, max(0, size - 64)).replace(b'"', b"'").replace(b"\\", b"/")
    return b'{"total": NaN, "password": "horse battery staple", "note": "' + inner + b'"}'


# name → body of about `size` bytes
WORKLOADS: dict[str, Callable[[int], bytes]] = {
    "text: token×n": lambda n: _fill(b"token", n),
    "text: tokens=a,": lambda n: _fill(b"tokens=a,", n),
    "text: password-- ": lambda n: _fill(b"password-- ", n),
    "text: digits '1 '": lambda n: _fill(b"1 ", n),
    "text: 4111-": lambda n: _fill(b"4111-", n),
    "text: control chars": lambda n: _fill(b"\x01\xe2\x80\xae", n),
    "json: token×n (NaN)": lambda n: _json(b"token", n),
    "json: many secret keys": lambda n: (
        b"[" + _fill(b'{"token": ["a", "b"], "x": 4111111111111111},', n) + b"{}]"
    ),
}


def _row(body: bytes, kind_hint: str) -> dict[str, Any]:
    props = {"content_type": "application/json" if kind_hint == "json" else "text/plain"}
    delivery = Delivery("events", "bench", False, props, None, body, dt.datetime.now(dt.UTC))
    row = to_row(delivery, 64 * 1024 * 1024)
    row.update(id=1, commit_seq=1)
    return row


def _time(work: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-kib", type=int, default=8)
    parser.add_argument("--max-kib", type=int, default=512)
    parser.add_argument(
        "--budget", type=float, default=3.0, help="stop growing a workload past this many seconds"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    mask = Redactor()
    print(f"{'workload':<24} {'size':>8} {'viewer ms':>10} {'baseline ms':>12} {'ratio':>8}")
    for name, make in WORKLOADS.items():
        size = args.min_kib * 1024
        while size <= args.max_kib * 1024:
            body = make(size)
            row = _row(body, name.split(":")[0])
            text = body.decode("utf-8", "replace")
            repeat = args.repeat if size <= 64 * 1024 else 1

            def viewer(row: dict[str, Any] = row) -> None:
                page = page_context(row, mask)
                bus_text(page["pretty"] or page["body_text"], True)
                detail(row, mask)

            spent = _time(viewer, repeat)
            base = _time(lambda text=text: len(BASELINE.findall(text)), repeat)
            print(
                f"{name:<24} {len(body) // 1024:>6}Ki {spent * 1000:>10.1f} "
                f"{base * 1000:>12.2f} {spent / base:>8.1f}",
                flush=True,
            )
            if spent > args.budget:
                print(f"{'':<24} (stopped: over {args.budget:.0f} s per request)", flush=True)
                break
            size *= 2


if __name__ == "__main__":
    main()

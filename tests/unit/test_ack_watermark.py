"""AckWatermark: a cumulative ack never covers a delivery that is not committed yet."""

from __future__ import annotations

from eventscope.backend.ingest.acks import AckWatermark


def test_in_order_commits_advance_the_watermark() -> None:
    mark = AckWatermark()
    assert mark.commit([1, 2, 3]) == 3
    assert mark.commit([4]) == 4
    assert mark.acked == 4


def test_out_of_order_commit_waits_for_the_gap_to_fill() -> None:
    mark = AckWatermark()
    assert mark.commit([3, 4]) is None
    assert mark.acked == 0
    assert mark.commit([1]) == 1
    assert mark.commit([2]) == 4


def test_watermark_stops_at_the_highest_contiguous_tag() -> None:
    mark = AckWatermark()
    assert mark.commit([1, 2, 4, 5, 7]) == 2
    assert mark.commit([3]) == 5
    assert mark.commit([6]) == 7


def test_commit_that_does_not_move_the_watermark_returns_none() -> None:
    mark = AckWatermark()
    assert mark.commit([]) is None
    assert mark.commit([10]) is None
    assert mark.commit([1]) == 1
    assert mark.commit([1]) is None


def test_batches_finishing_in_reverse_order() -> None:
    mark = AckWatermark()
    batches = [list(range(start, start + 100)) for start in range(1, 1001, 100)]
    moves = [mark.commit(batch) for batch in reversed(batches)]
    assert moves == [None] * 9 + [1000]
    assert mark.acked == 1000

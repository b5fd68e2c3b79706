"""assign_observations: a redelivery is stored once; a second publish is a duplicate."""

from __future__ import annotations

from typing import Any

from eventscope.backend.store.writer import assign_observations

FP_A = b"a" * 16
FP_B = b"b" * 16


def row(fingerprint: bytes, redelivered: bool = False, tag: str = "") -> dict[str, Any]:
    return {"fingerprint": fingerprint, "redelivered": redelivered, "tag": tag}


def test_redelivered_copy_of_a_stored_event_is_skipped() -> None:
    keep, skipped, duplicates = assign_observations([row(FP_A, redelivered=True)], {FP_A: 1})
    assert keep == []
    assert (skipped, duplicates) == (1, 0)


def test_non_redelivered_copy_of_a_stored_event_is_a_duplicate_observation() -> None:
    keep, skipped, duplicates = assign_observations([row(FP_A)], {FP_A: 1})
    assert [r["observation"] for r in keep] == [2]
    assert (skipped, duplicates) == (0, 1)


def test_duplicate_counts_on_from_the_highest_stored_observation() -> None:
    keep, _, _ = assign_observations([row(FP_A)], {FP_A: 4})
    assert keep[0]["observation"] == 5


def test_two_copies_in_one_batch_become_observations_1_and_2() -> None:
    keep, skipped, duplicates = assign_observations([row(FP_A, tag="x"), row(FP_A, tag="y")], {})
    assert [(r["tag"], r["observation"]) for r in keep] == [("x", 1), ("y", 2)]
    assert (skipped, duplicates) == (0, 1)


def test_redelivered_but_unknown_event_is_stored_as_first_observation() -> None:
    keep, skipped, duplicates = assign_observations([row(FP_A, redelivered=True)], {})
    assert [r["observation"] for r in keep] == [1]
    assert (skipped, duplicates) == (0, 0)


def test_redelivery_of_an_event_first_seen_in_the_same_batch_is_skipped() -> None:
    keep, skipped, _ = assign_observations([row(FP_A), row(FP_A, redelivered=True)], {})
    assert [r["observation"] for r in keep] == [1]
    assert skipped == 1


def test_other_fingerprints_are_unaffected_and_order_is_kept() -> None:
    rows = [row(FP_B, tag="b1"), row(FP_A, redelivered=True, tag="a"), row(FP_B, tag="b2")]
    keep, skipped, duplicates = assign_observations(rows, {FP_A: 1})
    assert [(r["tag"], r["observation"]) for r in keep] == [("b1", 1), ("b2", 2)]
    assert (skipped, duplicates) == (1, 1)


def test_input_rows_and_known_map_are_not_mutated() -> None:
    rows = [row(FP_A)]
    known = {FP_B: 1}
    assign_observations(rows, known)
    assert "observation" not in rows[0]
    assert known == {FP_B: 1}

"""assign_observations: a tap redelivery is stored once; a second publish is a duplicate.

A delivery flagged `redelivered` is skipped only when a pending listing of a gone recorder
session holds its fingerprint (`pending`); each listed fingerprint absorbs one redelivery.
"""

from __future__ import annotations

from typing import Any

from eventscope.backend.store.writer import (
    assign_observations,
    holders_listing,
    listing_of,
    pending_counts,
    split_fingerprints,
    take_absorbed,
)

FP_A = b"a" * 16
FP_B = b"b" * 16
FP_C = b"c" * 16


def row(fingerprint: bytes, redelivered: bool = False, tag: str = "") -> dict[str, Any]:
    return {"fingerprint": fingerprint, "redelivered": redelivered, "tag": tag}


def test_redelivered_copy_of_a_stored_and_pending_event_is_skipped() -> None:
    keep, skipped, duplicates, absorbed = assign_observations(
        [row(FP_A, redelivered=True)], {FP_A: 1}, {FP_A: 1}
    )
    assert keep == []
    assert (skipped, duplicates) == (1, 0)
    assert absorbed == [FP_A]


def test_redelivered_copy_of_a_stored_event_nothing_pending_is_a_new_observation() -> None:
    """A second publish of the same bytes, taken by a recorder that died before committing it:
    nothing lists it as committed-but-unacked, so it is not the stored observation."""
    keep, skipped, duplicates, _ = assign_observations([row(FP_A, redelivered=True)], {FP_A: 1})
    assert [r["observation"] for r in keep] == [2]
    assert (skipped, duplicates) == (0, 1)


def test_non_redelivered_copy_of_a_stored_event_is_a_duplicate_observation() -> None:
    keep, skipped, duplicates, _ = assign_observations([row(FP_A)], {FP_A: 1}, {FP_A: 1})
    assert [r["observation"] for r in keep] == [2]
    assert (skipped, duplicates) == (0, 1)


def test_duplicate_counts_on_from_the_highest_stored_observation() -> None:
    keep, _, _, _ = assign_observations([row(FP_A)], {FP_A: 4})
    assert keep[0]["observation"] == 5


def test_two_copies_in_one_batch_become_observations_1_and_2() -> None:
    keep, skipped, duplicates, _ = assign_observations([row(FP_A, tag="x"), row(FP_A, tag="y")], {})
    assert [(r["tag"], r["observation"]) for r in keep] == [("x", 1), ("y", 2)]
    assert (skipped, duplicates) == (0, 1)


def test_redelivered_but_unknown_event_is_stored_as_first_observation() -> None:
    keep, skipped, duplicates, _ = assign_observations([row(FP_A, redelivered=True)], {})
    assert [r["observation"] for r in keep] == [1]
    assert (skipped, duplicates) == (0, 0)


def test_redelivered_copy_of_an_event_first_seen_in_the_same_batch_is_a_second_observation() -> (
    None
):
    """One channel session never gets the same delivery twice: two copies in one batch are two
    publishes (both redelivered after a crash, neither committed)."""
    keep, skipped, _, _ = assign_observations([row(FP_A), row(FP_A, redelivered=True)], {})
    assert [r["observation"] for r in keep] == [1, 2]
    assert skipped == 0


def test_each_pending_listing_absorbs_one_redelivery() -> None:
    """Two identical publishes redelivered, one of them committed before the crash: one is the
    stored observation, the other a new one."""
    rows = [row(FP_A, redelivered=True, tag="1"), row(FP_A, redelivered=True, tag="2")]
    keep, skipped, duplicates, absorbed = assign_observations(rows, {FP_A: 1}, {FP_A: 1})
    assert [(r["tag"], r["observation"]) for r in keep] == [("2", 2)]
    assert (skipped, duplicates, absorbed) == (1, 1, [FP_A])


def test_two_pending_listings_absorb_two_redeliveries() -> None:
    rows = [row(FP_A, redelivered=True), row(FP_A, redelivered=True)]
    keep, skipped, _, _ = assign_observations(rows, {FP_A: 2}, {FP_A: 2})
    assert (keep, skipped) == ([], 2)


def test_other_fingerprints_are_unaffected_and_order_is_kept() -> None:
    rows = [row(FP_B, tag="b1"), row(FP_A, redelivered=True, tag="a"), row(FP_B, tag="b2")]
    keep, skipped, duplicates, _ = assign_observations(rows, {FP_A: 1}, {FP_A: 1})
    assert [(r["tag"], r["observation"]) for r in keep] == [("b1", 1), ("b2", 2)]
    assert (skipped, duplicates) == (1, 1)


def test_input_rows_known_and_pending_maps_are_not_mutated() -> None:
    rows = [row(FP_A, redelivered=True)]
    known = {FP_B: 1}
    pending = {FP_A: 1}
    assign_observations(rows, known, pending)
    assert "observation" not in rows[0]
    assert known == {FP_B: 1}
    assert pending == {FP_A: 1}


def test_a_listing_is_the_fingerprints_of_every_row_and_splits_back() -> None:
    blob = listing_of([row(FP_A), row(FP_B, redelivered=True), row(FP_A)])
    assert split_fingerprints(blob) == [FP_A, FP_B, FP_A]
    assert pending_counts([(1, blob), (2, FP_A)]) == {FP_A: 3, FP_B: 1}


def test_absorbed_fingerprints_are_taken_once_each_from_the_first_listing_holding_them() -> None:
    listings = [(10, FP_A + FP_B), (20, FP_A + FP_C)]
    changed = take_absorbed(listings, [FP_A, FP_A, FP_C])
    assert changed == {10: FP_B, 20: b""}


def test_holders_whose_listings_hold_a_fingerprint() -> None:
    listings = [(1, FP_A + FP_B), (2, FP_C), (3, b"")]
    assert holders_listing(listings, {FP_B}) == {1}
    assert holders_listing(listings, {FP_A, FP_C}) == {1, 2}
    assert holders_listing(listings, {b"z" * 16}) == set()

"""A reported step sequence against a codified order: each kind of deviation counted once."""

from __future__ import annotations

from harness.measure.sequence import deviations

CODIFIED = ["a", "b", "c", "d", "e"]


def kinds(reported: list[str]) -> list[tuple[str, str]]:
    return [(d.kind, d.step) for d in deviations(reported, CODIFIED)]


def test_the_codified_order_has_no_deviation() -> None:
    assert deviations(CODIFIED, CODIFIED) == []


def test_a_swap_of_neighbours_is_one_step_out_of_order() -> None:
    assert len(kinds(["a", "c", "b", "d", "e"])) == 1


def test_one_step_taken_early_counts_once_not_for_every_step_it_overtook() -> None:
    assert kinds(["e", "a", "b", "c", "d"]) == [("out_of_order", "e")]


def test_missing_unexpected_and_repeated_steps_are_named() -> None:
    found = kinds(["a", "x", "b", "b", "d"])
    assert found == [("unexpected", "x"), ("repeated", "b"), ("missing", "c"), ("missing", "e")]
    assert str(deviations(["a", "x"], ["a"])[0]) == "unexpected: x (reported as step 2)"


def test_a_sequence_given_up_early_misses_the_rest() -> None:
    assert kinds(["a", "b"]) == [("missing", "c"), ("missing", "d"), ("missing", "e")]

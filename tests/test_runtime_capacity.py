"""The decision rule of `bench-pipeline --streams max` on recorded pass outcomes (no timing)."""

from __future__ import annotations

import math

import pytest

from ddavs_rt.runtime.capacity import CapacitySearch, pass_ok


def _drive(search: CapacitySearch, outcome) -> list[int]:
    """Run the search against `outcome(n, attempt) -> passed`; returns the stream counts tried."""
    tried: list[int] = []
    while (n := search.next_streams()) is not None:
        assert len(tried) < 50, f"the search does not end: {tried}"
        search.record(n, outcome(n, tried.count(n)))
        tried.append(n)
    return tried


@pytest.mark.parametrize("capacity", [1, 2, 3, 5, 7, 8, 13, 31])
def test_a_box_that_sustains_exactly_c_streams_is_found(capacity: int) -> None:
    search = CapacitySearch(start=1, limit=32)
    tried = _drive(search, lambda n, _: n <= capacity)
    assert search.result == capacity and not search.capped
    assert tried.count(capacity) == 2  # the answer passed twice: its search pass and a confirmation
    assert capacity + 1 in tried  # the next count up failed: the answer is a measured edge, not a guess


def test_doubling_then_bisection_order() -> None:
    search = CapacitySearch(start=1, limit=64)
    assert _drive(search, lambda n, _: n <= 5) == [1, 2, 4, 8, 6, 5, 5]


def test_a_failed_confirmation_moves_the_answer_down() -> None:
    # 6 passes once (a quiet moment), then fails its confirmation: the answer is 5, confirmed twice
    search = CapacitySearch(start=1, limit=64)
    tried = _drive(search, lambda n, attempt: n <= 5 or (n == 6 and attempt == 0))
    assert search.result == 5
    assert tried[-2:] == [5, 5] and (6, False) in search.history


def test_nothing_sustained_when_one_stream_fails() -> None:
    search = CapacitySearch(start=1, limit=32)
    assert _drive(search, lambda n, _: False) == [1] and search.result == 0


def test_a_failing_start_searches_below_it() -> None:
    search = CapacitySearch(start=8, limit=32)
    tried = _drive(search, lambda n, _: n <= 3)
    assert tried[0] == 8 and search.result == 3 and tried.count(3) == 2


def test_the_cap_is_reported_as_a_cap() -> None:
    search = CapacitySearch(start=1, limit=6)
    tried = _drive(search, lambda n, _: True)
    assert tried == [1, 2, 4, 6, 6] and search.result == 6 and search.capped


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="start"):
        CapacitySearch(start=0, limit=4)
    with pytest.raises(ValueError, match="start"):
        CapacitySearch(start=5, limit=4)


@pytest.mark.parametrize(("dropped", "p95", "passed"), [
    (0.0, 35.0, True), (0.0, 100.0, True), (0.0, 100.1, False), (0.012, 73.0, False), (0.0, None, False),
    (0.0, math.nan, False),
])
def test_the_bar_of_a_pass(dropped: float, p95: float | None, passed: bool) -> None:
    # the figures: 2 streams at p95 35 ms clean passes; 3 streams with 1.2 % dropped fails
    assert pass_ok(dropped, p95) is passed

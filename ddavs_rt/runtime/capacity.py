"""How many live streams a box sustains: the decision rule of `ddavs-rt bench-pipeline --streams max`.

A pass runs N synthetic streams for a fixed time; it *passes* when no frame was dropped
(`max_dropped_share`, 0 by default) and the p95 of capture-to-sent over every frame of the pass is
at most `max_p95_ms` (100 ms by default). The search assumes that a box which cannot sustain N
streams cannot sustain more, and:

1. grows: N = start, 2 start, 4 start, ... (capped at `limit`) until a pass fails;
2. bisects between the largest N that passed and the smallest that failed;
3. confirms: the answer must pass twice (its search pass and one more). A failed confirmation
   makes that N the smallest failure, and the search goes on below it.

The answer is the largest N that passed twice with no failure recorded at or below it (when
`start` fails the search goes below it; 0 when even one stream fails; `limit` when the cap itself
passed twice: then the box may sustain more).
`CapacitySearch` holds only the rule: the caller runs the passes and records each result, so the
rule can be checked on recorded outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def pass_ok(dropped_share: float, p95_ms: float | None, *, max_dropped_share: float = 0.0,
            max_p95_ms: float = 100.0) -> bool:
    """Whether one pass meets the bar: drops within `max_dropped_share`, p95 within `max_p95_ms`.

    A pass with no latency (nothing sent: p95 None or NaN) fails.
    """
    if p95_ms is None or math.isnan(p95_ms):
        return False
    return dropped_share <= max_dropped_share and p95_ms <= max_p95_ms


@dataclass
class CapacitySearch:
    """The stream counts to try, one at a time: `next_streams()`, then `record(n, passed)`."""

    start: int = 1
    limit: int = 64
    confirm: bool = True
    history: list[tuple[int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.start <= self.limit:
            raise ValueError(f"the search needs 1 <= start <= limit, got start {self.start}, limit {self.limit}")

    # ------------------------------------------------------------------ what is known
    def _passes(self, n: int) -> int:
        return sum(1 for m, ok in self.history if m == n and ok)

    def _lowest_failure(self) -> int | None:
        failed = [n for n, ok in self.history if not ok]
        return min(failed) if failed else None

    def _highest_pass_below(self, bound: int) -> int:
        passed = [n for n, ok in self.history if ok and n < bound]
        return max(passed) if passed else 0

    # ------------------------------------------------------------------ the rule
    def next_streams(self) -> int | None:
        """The stream count to run next; None when the search is over (see `result`)."""
        if not self.history:
            return self.start
        failure = self._lowest_failure()
        bound = failure if failure is not None else self.limit + 1
        best = self._highest_pass_below(bound)
        if failure is None and best < self.limit:  # still growing
            return min(self.limit, max(best * 2, self.start))
        if bound - best > 1:  # a gap between the largest pass and the smallest failure
            return (best + bound) // 2  # below `start` too when `start` itself failed
        if best and self.confirm and self._passes(best) < 2:
            return best
        return None

    def record(self, streams: int, passed: bool) -> None:
        self.history.append((streams, passed))

    @property
    def done(self) -> bool:
        return self.next_streams() is None

    @property
    def result(self) -> int:
        """The most streams sustained (valid once `done`): 0 when even `start` failed."""
        failure = self._lowest_failure()
        return self._highest_pass_below(failure if failure is not None else self.limit + 1)

    @property
    def capped(self) -> bool:
        """The search stopped at `limit` without a failure: the box may sustain more."""
        return self._lowest_failure() is None and self.result == self.limit

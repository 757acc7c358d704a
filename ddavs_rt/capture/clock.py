"""The audio clock: a count of samples, anchored once to the stream clock and corrected for the
sound card's drift.

A sound card's crystal is not the host's: "48 kHz" may be 48 004 Hz. Counting samples gives
smooth, gap-free times; anchoring once (sample 0 at the ADC time of the first block, mapped to
the stream clock) gives the offset; a slow least-squares fit of arrival time against sample count
over the last minute gives the true period, applied going forward so times never jump. Arrival
times carry scheduling jitter and a constant latency; the slope ignores the latency and a long
window averages the jitter away.

This is the audio path's only clock-drift estimator: `sync.AudioRing` trusts the times it gives
(it fits no second clock on top). Until the first fit (`min_span_s`) the period is the nominal
one; the small offset that accumulates meanwhile (5 ms at 1000 ppm) is kept, since times never
jump, and does not grow afterwards.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleClock:
    """Maps a sample index (at the device's rate) to seconds on the stream clock."""

    def __init__(
        self,
        nominal_rate: float,
        *,
        fit_window_s: float = 60.0,
        refit_every_s: float = 2.0,
        min_span_s: float = 5.0,
        max_drift_ppm: float = 2000.0,
    ) -> None:
        self.nominal_rate = float(nominal_rate)
        self.fit_window_s = fit_window_s
        self.refit_every_s = refit_every_s
        self.min_span_s = min_span_s
        self.max_drift_ppm = max_drift_ppm
        self._observations: deque[tuple[float, float]] = deque()
        self._last_fit = -np.inf
        self.anchored = False
        self._n_ref = 0.0
        self._t_ref = 0.0
        self.period = 1.0 / self.nominal_rate  # seconds per sample, refined by the fit

    @property
    def rate(self) -> float:
        """The measured sample rate (the nominal one until enough data arrived)."""
        return 1.0 / self.period

    def anchor(self, sample: float, time_s: float) -> None:
        """Sample `sample` was captured at `time_s` (done once, at the first block)."""
        self._n_ref, self._t_ref = float(sample), float(time_s)
        self.anchored = True

    def time_of(self, sample: float) -> float:
        return self._t_ref + (sample - self._n_ref) * self.period

    def observe(self, sample_end: float, arrival_s: float) -> None:
        """The block ending before sample `sample_end` arrived at `arrival_s` (stream clock)."""
        self._observations.append((float(sample_end), float(arrival_s)))
        while self._observations and arrival_s - self._observations[0][1] > self.fit_window_s:
            self._observations.popleft()
        span = arrival_s - self._observations[0][1]
        if span < self.min_span_s or arrival_s - self._last_fit < self.refit_every_s:
            return
        self._last_fit = arrival_s
        samples, arrivals = np.array(self._observations).T
        slope = np.polyfit(samples - samples[0], arrivals - arrivals[0], 1)[0]  # seconds per sample
        nominal = 1.0 / self.nominal_rate
        limit = nominal * self.max_drift_ppm * 1e-6
        slope = float(np.clip(slope, nominal - limit, nominal + limit))
        # Re-reference at the newest sample so that the time of every later sample is continuous.
        self._t_ref, self._n_ref = self.time_of(sample_end), float(sample_end)
        self.period = slope

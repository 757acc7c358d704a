"""Audio ring buffers and the frame -> audio-window aligner.

Each stream keeps one `AudioRing`: mono float32 audio stored by its sample index on the stream
clock (index k holds the sample at time k / sample_rate). For a video frame at time t the runtime
asks `window(t)` for the samples of [t - 1 s + offset, t + offset]; parts with no audio are
zero-filled and reported, never invented.

Where a chunk goes. A chunk's timestamp is on the stream clock and the ring trusts it: every
source stamps its audio by counting samples (media: the first packet's PTS plus the samples
since, re-anchored at a discontinuity; the synthetic scene: its sample index; the microphone:
its sample count through `capture.clock.SampleClock`, the one clock-drift estimator, fitted on
arrival times over a minute). So the ring does not fit a second clock on top of the source's.
Chunks form runs: a chunk whose timestamp is within `max_jitter_s` of where the previous one
ended is continuous, and its samples are placed at its timestamp, spaced by the rate the run's
timestamps imply (so a drift the source measured is absorbed: a device 0.1 % fast delivers 0.1 %
more samples per stream second, interpolated onto the grid), leaving no holes and doubling no
samples. A chunk that is not continuous starts a new run at its own timestamp: later than
predicted leaves a gap (counted), earlier overwrites. A late chunk that ends before the newest
audio is written where its timestamp says without touching the run; audio older than the ring's
capacity is dropped and counted.

Threads: one capture thread pushes while the runtime reads windows; a lock guards the state.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

import numpy as np

from ddavs_rt.capture.types import AudioChunk

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AudioWindow:
    """The audio for one frame: exactly round(duration * sample_rate) samples from `start`.

    `samples` is float32 [S]; samples with no audio are 0 and counted in `missing_samples`.
    `start`/`end` are stream-clock seconds (end exclusive: the last sample is at end - 1/rate).
    `warmup_samples` of the missing ones lie before the stream's first audio sample (the window
    reaches back before the stream began: expected, not a fault); before any audio arrived, every
    missing sample counts as warm-up.
    """

    samples: np.ndarray
    start: float
    end: float
    sample_rate: int
    missing_samples: int
    warmup_samples: int = 0

    @property
    def gap_fraction(self) -> float:
        return self.missing_samples / len(self.samples) if len(self.samples) else 0.0

    @property
    def complete(self) -> bool:
        return self.missing_samples == 0

    @property
    def warmup(self) -> bool:
        """Some audio is missing only because the window starts before the stream's audio did."""
        return self.warmup_samples > 0

    @property
    def gap_samples(self) -> int:
        """Missing samples after the stream's audio began (a discontinuity or late audio)."""
        return self.missing_samples - self.warmup_samples


class AudioRing:
    """A ring buffer of one stream's mono audio, addressed by stream-clock time.

    `push(chunk)` stores a chunk where its time says; `window(t_end, duration, offset)` returns
    the samples of [t_end - duration + offset, t_end + offset]; `ready(t_end, offset)` says
    whether audio up to t_end + offset has arrived. Counters: `dropped_chunks`/`dropped_samples`
    (older than the capacity), `gaps` (discontinuities where audio went missing), `late_chunks`
    (written behind the newest audio), `rate_ratio` (the device's rate / the nominal rate).
    """

    def __init__(
        self,
        sample_rate: int,
        capacity_s: float = 10.0,
        max_jitter_s: float = 0.010,
        rate_tolerance: float = 0.005,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if capacity_s <= 0:
            raise ValueError(f"capacity_s must be positive, got {capacity_s}")
        self.sample_rate = int(sample_rate)
        self.capacity = int(math.ceil(capacity_s * sample_rate))
        self.max_jitter_s = float(max_jitter_s)
        self._buffer = np.zeros(self.capacity, dtype=np.float32)  # [N] samples, slot = k % N
        self._valid = np.zeros(self.capacity, dtype=bool)  # [N] slot holds a real sample
        self._head: int | None = None  # one past the newest sample index written
        self._first: int | None = None  # the first sample index ever written (the stream's audio start)
        self.rate_tolerance = float(rate_tolerance)
        self._run_start = 0.0  # fractional grid position of the current run's first sample
        self._run_count = 0  # samples in the current run (the count the next chunk starts at)
        self._step = 1.0  # grid positions per input sample the run's timestamps imply (~1)
        self._run_active = False
        self._last_pos = 0.0  # fractional grid position of the run's last input sample
        self._last_value = 0.0
        self._lock = threading.Lock()
        self.dropped_chunks = 0
        self.dropped_samples = 0
        self.gaps = 0
        self.late_chunks = 0

    # ---------------------------------------------------------------------------- properties
    @property
    def latest_time(self) -> float | None:
        """Stream time just after the newest sample, or None before the first chunk."""
        return None if self._head is None else self._head / self.sample_rate

    @property
    def rate_ratio(self) -> float:
        """The rate the current run's timestamps imply over the nominal rate (1.001 = 0.1 % fast)."""
        return 1.0 / self._step

    # ---------------------------------------------------------------------------------- push
    def push(self, chunk: AudioChunk) -> None:
        """Store a chunk's samples at the place its timestamp (and its run) says."""
        if chunk.sample_rate != self.sample_rate:
            raise ValueError(
                f"chunk at {chunk.sample_rate} Hz pushed into a {self.sample_rate} Hz ring: resample it first"
            )
        samples = np.asarray(chunk.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio chunks must be mono [S], got shape {samples.shape}")
        if len(samples) == 0:
            return
        with self._lock:
            self._push(float(chunk.time), samples)

    def _push(self, time: float, samples: np.ndarray) -> None:
        length = len(samples)
        stamp = time * self.sample_rate  # where the timestamp alone puts the first sample
        if self._head is not None and round(stamp) + length <= self._head - self.capacity:
            self.dropped_chunks += 1
            self.dropped_samples += length
            return
        if self._run_active:
            predicted = self._run_start + self._run_count * self._step
            if abs(stamp - predicted) <= self.max_jitter_s * self.sample_rate:
                self._continue_run(time, samples)
                return
            if self._head is not None and round(stamp) + length <= self._head:
                self.late_chunks += 1
                self._write(round(stamp), samples)
                return
            if stamp > predicted:
                self.gaps += 1
                log.debug("audio gap of %.1f ms at %.3f s", (stamp - predicted) / self.sample_rate * 1e3, time)
            else:
                log.debug("audio jumped back %.1f ms at %.3f s", (predicted - stamp) / self.sample_rate * 1e3, time)
        self._start_run(time, samples)

    def _start_run(self, time: float, samples: np.ndarray) -> None:
        self._run_start = time * self.sample_rate
        self._step = 1.0
        self._run_active = True
        self._run_count = len(samples)
        start = round(time * self.sample_rate)
        self._write(start, samples)
        self._last_pos = float(start + len(samples) - 1)
        self._last_value = float(samples[-1])

    def _continue_run(self, time: float, samples: np.ndarray) -> None:
        first = time * self.sample_rate  # where the source's clock puts this chunk
        # The rate the run's timestamps imply: grid positions per input sample since the run began
        # (exact for count-based stamps; bounded so one odd stamp cannot stretch a chunk).
        implied = (first - self._run_start) / self._run_count
        step = min(max(implied, 1.0 - self.rate_tolerance), 1.0 + self.rate_tolerance)
        self._step = step
        self._run_count += len(samples)
        assert self._head is not None
        origin = self._head  # write from the end of the run so far: no holes, no doubles
        positions = first - origin + step * np.arange(len(samples), dtype=np.float64)  # [L]
        count = round(positions[-1]) + 1
        if count <= 0:
            return
        grid = np.arange(count, dtype=np.float64)
        previous = self._last_pos - origin
        if previous < positions[0]:
            positions = np.concatenate(([previous], positions))
            values = np.concatenate(([self._last_value], samples.astype(np.float64)))
        else:
            values = samples.astype(np.float64)
        resampled = np.interp(grid, positions, values).astype(np.float32)  # [count]
        self._write(origin, resampled)
        self._last_pos = origin + float(positions[-1])
        self._last_value = float(samples[-1])

    def _write(self, start: int, values: np.ndarray) -> None:
        """Write values at absolute sample indices [start, start + len); clears skipped slots."""
        end = start + len(values)
        if self._head is None:
            self._head = start
        if self._first is None or start < self._first:
            self._first = start
        if end > self._head:
            # Slots for [head, end) still hold audio from one capacity ago: invalidate them.
            clear_from = max(self._head, end - self.capacity)
            self._slots(clear_from, end, self._valid, False)
            self._head = end
        oldest = self._head - self.capacity
        if start < oldest:
            cut = min(oldest - start, len(values))
            self.dropped_samples += cut
            values = values[cut:]
            start += cut
        if len(values):
            self._slots(start, start + len(values), self._buffer, values)
            self._slots(start, start + len(values), self._valid, True)

    def _spans(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Where absolute sample indices [start, end) (end - start <= N) lie in the ring: at most two
        (slot, count, offset from start) slices, the second wrapping to slot 0."""
        n = end - start
        if n <= 0:
            return []
        first = start % self.capacity
        split = min(n, self.capacity - first)
        return [(first, split, 0)] + ([(0, n - split, split)] if n > split else [])

    def _slots(self, start: int, end: int, target: np.ndarray, values) -> None:
        """target[k % N] = values for k in [start, end) (end - start <= N)."""
        scalar = np.isscalar(values) or isinstance(values, bool)
        for slot, count, offset in self._spans(start, end):
            target[slot : slot + count] = values if scalar else values[offset : offset + count]

    # -------------------------------------------------------------------------------- window
    def window(self, t_end: float, duration: float = 1.0, offset: float = 0.0) -> AudioWindow:
        """The round(duration * rate) samples of [t_end - duration + offset, t_end + offset]."""
        size = round(duration * self.sample_rate)
        if size <= 0:
            raise ValueError(f"window duration must be positive, got {duration}")
        if size > self.capacity:
            raise ValueError(f"a {duration} s window does not fit a {self.capacity / self.sample_rate} s ring")
        end = round((t_end + offset) * self.sample_rate)
        start = end - size
        samples = np.zeros(size, dtype=np.float32)  # [S]
        found = 0
        with self._lock:
            if self._head is not None:
                lo = max(start, self._head - self.capacity)
                hi = min(end, self._head)
                for slot, count, offset in self._spans(lo, hi):  # copy the valid samples, slice by slice
                    present = self._valid[slot : slot + count]
                    out = lo - start + offset
                    np.copyto(samples[out : out + count], self._buffer[slot : slot + count], where=present)
                    found += int(np.count_nonzero(present))
            warmup = size - found if self._first is None else min(size - found, max(0, min(end, self._first) - start))
        return AudioWindow(
            samples=samples,
            start=start / self.sample_rate,
            end=end / self.sample_rate,
            sample_rate=self.sample_rate,
            missing_samples=size - found,
            warmup_samples=warmup,
        )

    def ready(self, t_end: float, offset: float = 0.0) -> bool:
        """Whether audio up to t_end + offset has arrived (later audio can no longer fill it in)."""
        end = round((t_end + offset) * self.sample_rate)
        with self._lock:
            return self._head is not None and self._head >= end

"""Per-stream health: processed frame rate, drops, audio health and latency percentiles.

Two kinds of latency percentile, named for what they cover:
- rolling (`latency_rolling_*`): the frames of the last `rolling_s` seconds (10 s), for the live
  status line; with no frame in that time they are NaN (printed "-"), never a stale value;
- whole run (`latency_run_*`): every frame since the stream started, from an HDR histogram
  (`hdrhistogram`, 3 significant digits, 1 us .. 1 h), which is mergeable: a benchmark adds the
  streams' histograms to get percentiles over all of them without keeping a list of values.

Latency here is capture to sent: from the frame's capture wall time to the moment the publisher's
send returned (stamped after the send, so a message's own header cannot carry it; see
`publish/schema.py`).

Audio health separates what is expected from what is wrong:
- warm-up windows: the frame's 1-second window reaches back before the stream's first audio
  sample (the first second of every stream); not a fault;
- incomplete windows: audio is missing after the stream's audio began (a discontinuity, or audio
  that arrived too late for its frame);
- ring gaps (`AudioRing.gaps`): discontinuities in the audio itself; microphone overflows:
  PortAudio input overflows reported by a microphone source.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
from hdrh.histogram import HdrHistogram

ROLLING_S = 10.0
_HDR_LOWEST_US = 1
_HDR_HIGHEST_US = 3_600_000_000  # one hour
_HDR_DIGITS = 3


def new_latency_histogram() -> HdrHistogram:
    """An empty whole-run latency histogram in microseconds (add() merges two of them)."""
    return HdrHistogram(_HDR_LOWEST_US, _HDR_HIGHEST_US, _HDR_DIGITS)


def record_ms(histogram: HdrHistogram, value_ms: float) -> None:
    micros = int(round(value_ms * 1000.0))
    histogram.record_value(min(max(micros, _HDR_LOWEST_US), _HDR_HIGHEST_US))


def histogram_percentiles_ms(histogram: HdrHistogram, qs: tuple[float, ...] = (50, 95, 99)) -> tuple[float, ...]:
    """Percentiles (ms) of a latency histogram; NaN when it holds no value."""
    if histogram.get_total_count() == 0:
        return tuple(math.nan for _ in qs)
    return tuple(histogram.get_value_at_percentile(q) / 1000.0 for q in qs)


class RollingWindow:
    """Values (ms) of the last `seconds` seconds; percentiles over them, NaN when there are none."""

    def __init__(self, seconds: float = ROLLING_S) -> None:
        self.seconds = seconds
        self._items: deque[tuple[float, float]] = deque()  # (monotonic time, value)

    def add(self, value_ms: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._items.append((now, float(value_ms)))
        self._prune(now)

    def percentiles(self, qs: tuple[float, ...] = (50, 95, 99), now: float | None = None) -> tuple[float, ...]:
        self._prune(time.monotonic() if now is None else now)
        if not self._items:
            return tuple(math.nan for _ in qs)
        values = np.fromiter((v for _, v in self._items), float, count=len(self._items))
        return tuple(float(v) for v in np.percentile(values, qs))

    def _prune(self, now: float) -> None:
        while self._items and now - self._items[0][0] > self.seconds:
            self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class StreamHealthSnapshot:
    """What `ddavs-rt` prints and the metrics endpoint exports, per stream."""

    stream_id: str
    source_state: str
    processed: int
    fps: float  # over the last 5 s; 0 when no frame arrived in that time
    frames_dropped: int
    silent_windows: int
    publisher_dropped: int
    reconnects: int
    latency_rolling_p50_ms: float  # capture to sent, frames of the last `rolling_s` seconds
    latency_rolling_p95_ms: float
    latency_rolling_p99_ms: float
    infer_rolling_p50_ms: float
    live_j: float | None  # mean J over the frames since the previous snapshot
    live_f: float | None
    error: str | None
    run_j: float | None = None  # mean J over every frame with ground truth since the start
    run_f: float | None = None
    latency_run_p50_ms: float = math.nan  # capture to sent, every frame since the start
    latency_run_p95_ms: float = math.nan
    latency_run_p99_ms: float = math.nan
    rolling_s: float = ROLLING_S
    audio_warmup_windows: int = 0
    audio_incomplete_windows: int = 0
    audio_ring_gaps: int = 0
    mic_overflows: int = 0
    engine_failed_frames: int = 0
    fault: str | None = None  # the stream was stopped by the runtime (the engine fails on its input)
    audio_state: str | None = None  # a paired microphone's state ("running", "reconnecting", ...), else None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class TruthSums:
    """Running sums of per-frame J and F; F skips frames with an empty truth, as AVSBench does."""

    j_sum: float = 0.0
    frames: int = 0
    f_sum: float = 0.0
    f_frames: int = 0

    def add(self, j: float, f: float | None) -> None:
        self.j_sum += j
        self.frames += 1
        if f is not None:
            self.f_sum += f
            self.f_frames += 1

    def means(self) -> tuple[float | None, float | None]:
        return (self.j_sum / self.frames if self.frames else None), (self.f_sum / self.f_frames if self.f_frames else None)


class StreamCounters:
    """Counters the scheduler updates for one stream (from its thread and its inference loops, under a
    lock; readers take snapshots)."""

    def __init__(self, rate_window_s: float = 5.0, rolling_s: float = ROLLING_S) -> None:
        self._lock = threading.Lock()
        self.processed = 0
        self.silent_windows = 0
        self.audio_warmup_windows = 0
        self.audio_incomplete_windows = 0
        self.engine_failed_frames = 0
        self.latency = RollingWindow(rolling_s)  # capture to sent
        self.infer = RollingWindow(rolling_s)
        self.run_latency = new_latency_histogram()  # capture to sent, whole run
        self._times: deque[float] = deque()
        self._rate_window_s = rate_window_s
        self._interval = TruthSums()  # since the last take_truth()
        self._run = TruthSums()  # since the start, never reset

    def record_audio(self, silent: bool, warmup: bool, incomplete: bool) -> None:
        """Classify one frame's audio window (before its header is built, so the header is current)."""
        with self._lock:
            if silent:
                self.silent_windows += 1
            elif incomplete:
                self.audio_incomplete_windows += 1
            elif warmup:
                self.audio_warmup_windows += 1

    def record_sent(self, capture_to_sent_ms: float, infer_ms: float) -> None:
        """One frame sent (called after the send returned)."""
        now = time.monotonic()
        with self._lock:
            self.processed += 1
            self.latency.add(capture_to_sent_ms, now)
            self.infer.add(infer_ms, now)
            record_ms(self.run_latency, capture_to_sent_ms)
            self._times.append(now)
            self._prune(now)

    def record_engine_failure(self) -> None:
        with self._lock:
            self.engine_failed_frames += 1

    def record_truth(self, j: float, f: float | None) -> None:
        with self._lock:
            self._interval.add(j, f)
            self._run.add(j, f)

    def _prune(self, now: float) -> None:
        while self._times and now - self._times[0] > self._rate_window_s:
            self._times.popleft()

    def fps(self) -> float:
        """Frames per second over the last `rate_window_s`; falls to 0 when frames stop."""
        with self._lock:
            self._prune(time.monotonic())
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def latency_percentiles(self) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
        """(rolling p50/p95/p99, whole-run p50/p95/p99, rolling inference p50), in ms."""
        with self._lock:
            rolling = self.latency.percentiles()
            run = histogram_percentiles_ms(self.run_latency)
            (infer,) = self.infer.percentiles((50,))
        return rolling, run, infer  # type: ignore[return-value]

    def run_histogram(self) -> HdrHistogram:
        """A copy of the whole-run latency histogram (for merging across streams)."""
        with self._lock:
            copy = new_latency_histogram()
            copy.add(self.run_latency)
            return copy

    def run_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over every frame with ground truth since the stream started."""
        with self._lock:
            return self._run.means()

    def take_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over the frames since the last call (live accuracy), then reset."""
        with self._lock:
            means, self._interval = self._interval.means(), TruthSums()
            return means

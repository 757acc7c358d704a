"""Per-stream health: processed frame rate, drops, audio gaps and latency percentiles."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np


class LatencyWindow:
    """The last `size` latencies (ms); percentiles over them."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value_ms: float) -> None:
        self._values.append(float(value_ms))

    def percentiles(self, qs: tuple[float, ...] = (50, 95, 99)) -> tuple[float, ...]:
        if not self._values:
            return tuple(float("nan") for _ in qs)
        return tuple(float(v) for v in np.percentile(np.fromiter(self._values, float), qs))

    def __len__(self) -> int:
        return len(self._values)


@dataclass(slots=True)
class StreamHealthSnapshot:
    """What `ddavs-rt` prints and the metrics endpoint exports, per stream."""

    stream_id: str
    source_state: str
    processed: int
    fps: float
    frames_dropped: int
    audio_gaps: int
    silent_windows: int
    publisher_dropped: int
    reconnects: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    infer_p50_ms: float
    live_j: float | None  # mean J over the frames since the previous snapshot
    live_f: float | None
    error: str | None
    run_j: float | None = None  # mean J over every frame with ground truth since the start
    run_f: float | None = None

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
    """Counters the scheduler updates for one stream (one writer thread, readers take snapshots)."""

    def __init__(self, rate_window_s: float = 5.0) -> None:
        self._lock = threading.Lock()
        self.processed = 0
        self.audio_gaps = 0
        self.silent_windows = 0
        self.latency = LatencyWindow()
        self.infer = LatencyWindow()
        self._times: deque[float] = deque()
        self._rate_window_s = rate_window_s
        self._interval = TruthSums()  # since the last take_truth()
        self._run = TruthSums()  # since the start, never reset

    def record(self, latency_ms: float, infer_ms: float, audio_complete: bool, silent: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self.processed += 1
            self.latency.add(latency_ms)
            self.infer.add(infer_ms)
            if silent:
                self.silent_windows += 1
            elif not audio_complete:
                self.audio_gaps += 1
            self._times.append(now)
            while self._times and now - self._times[0] > self._rate_window_s:
                self._times.popleft()

    def record_truth(self, j: float, f: float | None) -> None:
        with self._lock:
            self._interval.add(j, f)
            self._run.add(j, f)

    def fps(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def run_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over every frame with ground truth since the stream started."""
        with self._lock:
            return self._run.means()

    def take_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over the frames since the last call (live accuracy), then reset."""
        with self._lock:
            means, self._interval = self._interval.means(), TruthSums()
            return means

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
        self.j_sum = 0.0
        self.f_sum = 0.0
        self.truth_frames = 0
        self.f_frames = 0  # frames with a non-empty truth: F skips the others, as AVSBench does
        self._run = [0.0, 0, 0.0, 0]  # J sum, frames, F sum, F frames since the start (never reset)

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
            self.j_sum += j
            self.truth_frames += 1
            self._run[0] += j
            self._run[1] += 1
            if f is not None:
                self.f_sum += f
                self.f_frames += 1
                self._run[2] += f
                self._run[3] += 1

    def fps(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def run_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over every frame with ground truth since the stream started."""
        with self._lock:
            j_sum, frames, f_sum, f_frames = self._run
            return (j_sum / frames if frames else None), (f_sum / f_frames if f_frames else None)

    def take_truth(self) -> tuple[float | None, float | None]:
        """Mean J and F over the frames since the last call (live accuracy), then reset."""
        with self._lock:
            if not self.truth_frames:
                return None, None
            j = self.j_sum / self.truth_frames
            f = self.f_sum / self.f_frames if self.f_frames else None
            self.j_sum = self.f_sum = 0.0
            self.truth_frames = self.f_frames = 0
            return j, f

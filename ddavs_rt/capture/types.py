"""The hand-off types between capture, synchronization, the runtime and publishing.

All times are seconds on the stream's own clock (monotonic seconds since the stream started,
or PTS seconds for media), except `wall_time`, which is Unix seconds at capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class VideoFrame:
    """One decoded video frame: uint8 RGB [H, W, 3] captured at `time` on the stream clock."""

    stream_id: str
    index: int
    time: float
    wall_time: float
    image: np.ndarray
    # Optional ground truth (synthetic sources only): binary mask [H, W] uint8 {0, 1} and
    # semantic mask [H, W] uint8 of class ids; None for real sources.
    ground_truth: np.ndarray | None = None
    semantic_truth: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


@dataclass(slots=True)
class AudioChunk:
    """Consecutive mono samples, float32 in [-1, 1], at `sample_rate`; the first at `time`."""

    stream_id: str
    time: float
    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_time(self) -> float:
        return self.time + self.duration

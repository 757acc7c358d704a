"""An onnxruntime CalibrationDataReader over clip folders: one sample (batch 1) per call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ddavs_rt.calibration.clips import clip_samples, find_clips


class ClipCalibrationReader(CalibrationDataReader):
    """Feeds {"frames": uint8 [1, H, W, 3], "audio": float32 [1, S]} from the first `clips` clips."""

    def __init__(self, root: str | Path, size: int, sample_rate: int, window_samples: int, clips: int = 32) -> None:
        self.clips = find_clips(root)[:clips]
        self._args = (size, sample_rate, window_samples)
        self._samples: Iterator[tuple[np.ndarray, np.ndarray]] = self._iterate()
        self.count = 0

    def _iterate(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for clip in self.clips:
            yield from clip_samples(clip, *self._args)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._samples, None)
        if sample is None:
            return None
        self.count += 1
        frame, audio = sample
        return {"frames": frame[None], "audio": audio[None]}

    def rewind(self) -> None:
        self._samples = self._iterate()

"""A streaming resampler on python-soxr's `ResampleStream`: blocks in, blocks out, no seams, no torch.

libsoxr is a library made for exactly this: it keeps its own filter history between calls, so the
concatenated output equals one-shot resampling of the concatenated input, and output sample k of
the stream sits at input position k * orig / new (counted from the first input sample after
`reset()`): soxr removes its filter delay, it only holds the newest samples back until their
filter support has arrived (about 20 ms from 44.1 or 48 kHz to 16 kHz with the "HQ" filter, about 70 ms from 8 kHz).
The streaming runtime (the microphone) uses it, so a deployment without torch can capture audio.
"""

from __future__ import annotations

import numpy as np
import soxr


class StreamingResampler:
    """Resample consecutive mono float32 blocks from `orig_rate` to `new_rate`."""

    def __init__(self, orig_rate: int, new_rate: int, quality: str = "HQ") -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        self.quality = quality
        self.reset()

    def reset(self) -> None:
        """Forget all input (after a gap): the next block's first sample is position 0."""
        self._stream = None
        if self.orig_rate != self.new_rate:
            self._stream = soxr.ResampleStream(self.orig_rate, self.new_rate, 1, dtype="float32", quality=self.quality)
        self._next_out = 0  # index of the next output sample to emit

    @property
    def ratio(self) -> float:
        """Input samples per output sample."""
        return self.orig_rate / self.new_rate

    def process(self, block: np.ndarray) -> tuple[int, np.ndarray]:
        """Feed a block [n] float32; returns (index of the first output sample, samples [m])."""
        block = np.ascontiguousarray(np.asarray(block, dtype=np.float32).reshape(-1))
        first = self._next_out
        if self._stream is None:  # equal rates: a pass-through that keeps the counters
            out = block.copy()
        else:
            out = np.asarray(self._stream.resample_chunk(block, last=False), dtype=np.float32).reshape(-1)
        self._next_out += len(out)
        return first, out

"""A streaming resampler built on torchaudio's windowed-sinc `Resample`: blocks in, blocks out,
no seams.

torchaudio resamples whole signals. Here the input is kept in a short history buffer and each
call resamples the history plus the new block, emitting only the output samples whose filter
support lies entirely inside the buffer. The buffer always starts on a multiple of the reduced
input period, so output sample k of the stream sits exactly at input position k * orig / new
(counted from the first input sample after `reset()`), and the concatenated output equals
one-shot resampling of the concatenated input. The price is a delay of about one filter
half-width (under 2 ms at 48 or 44.1 kHz to 16 kHz).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio


class StreamingResampler:
    """Resample consecutive mono float32 blocks from `orig_rate` to `new_rate`."""

    def __init__(self, orig_rate: int, new_rate: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> None:
        if orig_rate <= 0 or new_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {orig_rate} and {new_rate}")
        self.orig_rate, self.new_rate = int(orig_rate), int(new_rate)
        g = math.gcd(self.orig_rate, self.new_rate)
        self._o, self._n = self.orig_rate // g, self.new_rate // g
        self._transform = None
        if self._o != self._n:
            self._transform = torchaudio.transforms.Resample(
                self.orig_rate, self.new_rate, lowpass_filter_width=lowpass_filter_width, rolloff=rolloff,
            )
        # torchaudio's kernel reaches `width` reduced input samples before an output position and
        # `width + o` after it; one more sample of margin covers rounding.
        base = min(self._o, self._n) * rolloff
        width = math.ceil(lowpass_filter_width * self._o / base)
        self._margin = width + self._o + 1
        self.reset()

    def reset(self) -> None:
        """Forget all input (after a gap): the next block's first sample is position 0."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0   # input index of _buffer[0]; a multiple of self._o
        self._total_in = 0       # input samples received since reset
        self._next_out = 0       # index of the next output sample to emit

    @property
    def ratio(self) -> float:
        """Input samples per output sample."""
        return self.orig_rate / self.new_rate

    def process(self, block: np.ndarray) -> tuple[int, np.ndarray]:
        """Feed a block [n] float32; returns (index of the first output sample, samples [m])."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        first = self._next_out
        if self._transform is None:  # equal rates: a pass-through that keeps the counters
            self._total_in += len(block)
            self._next_out += len(block)
            return first, block.copy()
        self._buffer = np.concatenate([self._buffer, block])
        self._total_in += len(block)
        o, n = self._o, self._n
        # Output k needs input up to k*o/n + margin: emit every k whose support has arrived.
        if self._total_in < self._margin:
            return first, np.zeros(0, dtype=np.float32)
        end = (self._total_in - self._margin) * n // o + 1
        if end <= self._next_out:
            return first, np.zeros(0, dtype=np.float32)
        offset = self._buffer_start * n // o  # output index of the segment's first output
        with torch.no_grad():
            out = self._transform(torch.from_numpy(self._buffer)[None, :])[0].numpy()  # [1, L] -> [L']
        samples = out[self._next_out - offset:end - offset].astype(np.float32, copy=True)
        self._next_out = end
        # Keep only the history the next output still needs, cut on a multiple of o.
        keep_from = max(0, (self._next_out * o // n) - self._margin)
        keep_from = keep_from // o * o
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start:]
            self._buffer_start = keep_from
        return first, samples

"""The streaming resampler and the drifting sample clock, on real signals and numbers."""

from __future__ import annotations

import numpy as np
import pytest

import soxr

from ddavs_rt.capture.clock import SampleClock
from ddavs_rt.capture.resample import StreamingResampler




@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (48000, 16000), (16000, 16000), (8000, 16000)])
def test_streaming_resampler_matches_one_shot_resampling(orig, new):
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(orig // 2).astype(np.float32)
    resampler = StreamingResampler(orig, new)
    outputs, position = [], 0
    while position < len(signal):
        size = int(rng.integers(1, 1500))
        first, out = resampler.process(signal[position:position + size])
        assert first == sum(len(o) for o in outputs)  # output indices are consecutive
        outputs.append(out)
        position += size
    streamed = np.concatenate(outputs)
    reference = soxr.resample(signal, orig, new, quality="HQ")  # libsoxr one-shot on the whole signal
    assert len(reference) - len(streamed) < 0.100 * new  # held back: ~20 ms from 44.1/48 kHz, ~70 ms from 8 kHz
    assert np.abs(streamed - reference[: len(streamed)]).max() < 1e-5  # no seams


def test_streaming_resampler_keeps_a_tone_in_phase_across_blocks():
    rate_in, rate_out = 44100, 16000
    t = np.arange(rate_in) / rate_in
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    resampler = StreamingResampler(rate_in, rate_out)
    out = np.concatenate([resampler.process(tone[i:i + 441])[1] for i in range(0, len(tone), 441)])
    k = np.arange(len(out))
    expected = np.sin(2 * np.pi * 440 * k / rate_out)  # output k sits at input time k / rate_out
    middle = slice(200, len(out) - 200)
    assert np.abs(out[middle] - expected[middle]).max() < 0.02


def test_reset_restarts_output_positions():
    resampler = StreamingResampler(48000, 16000)
    resampler.process(np.ones(4800, np.float32))
    resampler.reset()
    first, out = resampler.process(np.ones(4800, np.float32))
    assert first == 0 and 0 < len(out) <= 1600


def test_sample_clock_learns_the_true_rate_and_never_jumps():
    rng = np.random.default_rng(2)
    nominal, true_rate, block = 48000, 48048.0, 960  # the card runs 1000 ppm fast
    clock = SampleClock(nominal, min_span_s=5, refit_every_s=1)
    clock.anchor(0, 0.0)
    previous_period = clock.period
    for i in range(1, 1500):  # 30 s of blocks
        end = i * block
        before = clock.time_of(end)
        clock.observe(end, end / true_rate + 0.01 + rng.uniform(0, 0.005))  # latency + jitter
        assert clock.time_of(end) == pytest.approx(before, abs=1e-9)  # refits are continuous
        if clock.period != previous_period:
            previous_period = clock.period
    assert clock.rate == pytest.approx(true_rate, rel=50e-6)
    assert previous_period != 1 / nominal


def test_sample_clock_ignores_absurd_drift():
    clock = SampleClock(16000, min_span_s=1, refit_every_s=0.5, max_drift_ppm=1000)
    clock.anchor(0, 0.0)
    for i in range(1, 200):
        clock.observe(i * 160, i * 160 / 8000)  # arrivals claim half the rate
    assert clock.rate == pytest.approx(16000 / (1 + 1e-3), rel=1e-9)

"""AudioRing: samples land at their stream-clock time, gaps are reported, never invented.

The signal is a ramp: the device's n-th sample has value n * STEP, so a window's samples say
exactly which device sample (and so which true time) landed at each grid position.
"""

from __future__ import annotations

import numpy as np
import pytest

from ddavs_rt.capture.types import AudioChunk
from ddavs_rt.sync import AudioRing

RATE = 16000
CHUNK = 320  # 20 ms
STEP = 1e-6  # ramp increment per device sample (float32 keeps it exact to well under 0.01)


def _ramp(first: int, length: int) -> np.ndarray:
    return (np.arange(first, first + length, dtype=np.float64) * STEP).astype(np.float32)


def _device_stream(seconds: float, rate_ratio: float = 1.0, jitter_s: float = 0.0, seed: int = 0, skip=()):
    """Chunks of a device whose clock runs `rate_ratio` x nominal; timestamps on the stream clock."""
    rng = np.random.default_rng(seed)
    chunks = []
    n_chunks = int(seconds * RATE / CHUNK)
    for i in range(n_chunks):
        first = i * CHUNK  # device sample count
        true_time = first / (RATE * rate_ratio)
        stamp = true_time + (rng.uniform(-jitter_s, jitter_s) if jitter_s else 0.0)
        if i in skip:
            continue
        chunks.append(AudioChunk("s", stamp, _ramp(first, CHUNK), RATE))
    return chunks


def _device_index(window) -> np.ndarray:
    return window.samples.astype(np.float64) / STEP


def _grid(window) -> np.ndarray:
    return np.arange(round(window.start * RATE), round(window.end * RATE))


def test_contiguous_chunks_land_exactly_and_window_has_exact_length() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    for chunk in _device_stream(3.0):
        ring.push(chunk)
    w = ring.window(2.5)
    assert len(w.samples) == RATE and w.samples.dtype == np.float32
    assert w.start == pytest.approx(1.5) and w.end == pytest.approx(2.5)
    assert w.complete and w.missing_samples == 0 and w.gap_fraction == 0.0
    np.testing.assert_allclose(_device_index(w), _grid(w), atol=0.01)
    assert ring.ready(2.5) and not ring.ready(3.01)


def test_jitter_within_tolerance_is_not_a_gap_and_leaves_no_holes() -> None:
    # Sources stamp by counting samples, so their stamps are smooth; the ring trusts them. Should a
    # source jitter (+-2 ms here), chunks within `max_jitter_s` still join the run: no gap is
    # counted, no hole is left, and every sample lands where its own stamp says, within the jitter.
    ring = AudioRing(RATE, capacity_s=4.0)
    for chunk in _device_stream(6.0, jitter_s=0.002, seed=3):  # +-2 ms = +-32 samples per chunk
        ring.push(chunk)
    w = ring.window(5.8)
    assert w.complete, "jitter must not be mistaken for gaps"
    assert ring.gaps == 0
    error = np.abs(_device_index(w) - _grid(w))
    assert error.max() <= 0.002 * RATE + 1, error.max()


def test_microphone_clock_then_ring_absorbs_drift_and_arrival_jitter() -> None:
    """The one drift estimator end to end: a sound card 1000 ppm fast whose blocks arrive with
    latency and jitter, timed by `SampleClock` as the microphone does, stored by the ring."""
    from ddavs_rt.capture.clock import SampleClock

    true_rate = RATE * 1.001
    clock = SampleClock(RATE, min_span_s=5.0, refit_every_s=1.0)
    clock.anchor(0, 0.0)  # the microphone anchors sample 0 on its first blocks (exact here)
    ring = AudioRing(RATE, capacity_s=4.0)
    rng = np.random.default_rng(5)
    errors = {}
    for i in range(int(40.0 * RATE / CHUNK)):
        first, end = i * CHUNK, (i + 1) * CHUNK
        clock.observe(end, end / true_rate + 0.008 + rng.uniform(0.0, 0.006))  # latency + jitter
        ring.push(AudioChunk("s", clock.time_of(first), _ramp(first, CHUNK), RATE))
        t = (i + 1) * CHUNK / true_rate  # stream time of the newest sample
        if abs(t - 20.0) < CHUNK / RATE / 2 or abs(t - 39.9) < CHUNK / RATE / 2:
            w = ring.window(t - 0.1)
            assert w.complete
            errors[round(t)] = np.abs(_device_index(w) / 1.001 - _grid(w)).max()  # sample n belongs at n / ratio
    assert ring.gaps == 0
    assert clock.rate == pytest.approx(true_rate, rel=50e-6)
    # Until the first fit (5 s) the clock runs at the nominal rate: 5 ms = 80 samples behind, kept
    # (times never jump). After that the error does not grow: the drift is absorbed.
    assert errors[40] < 120 and abs(errors[40] - errors[20]) < 16, errors
    # Not correcting would put the last second 40 s * 0.1 % = 40 ms = 640 samples off.


@pytest.mark.parametrize("rate_ratio", [1.001, 0.999])
def test_audio_clock_drift_is_absorbed_to_within_one_sample(rate_ratio: float) -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    for chunk in _device_stream(20.0, rate_ratio=rate_ratio):
        ring.push(chunk)
    assert ring.rate_ratio == pytest.approx(rate_ratio, abs=2e-5)
    w = ring.window(19.5)
    assert w.complete, "drift must neither leave holes nor count as gaps"
    # Device sample n belongs at stream time n / (RATE * ratio): grid index n / ratio.
    landed_at = _device_index(w) / rate_ratio
    assert np.abs(landed_at - _grid(w)).max() <= 1.0
    # Counting samples instead of following timestamps would be 0.1 % * 19.5 s = 312 samples off.
    assert abs(_device_index(w)[-1] - _grid(w)[-1]) > 300


def test_gap_is_zero_filled_counted_and_the_rest_is_in_place() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    skip = set(range(100, 110))  # 2.0 s .. 2.2 s never arrives
    for chunk in _device_stream(3.0, skip=skip):
        ring.push(chunk)
    w = ring.window(2.5)  # [1.5, 2.5)
    assert ring.gaps == 1
    assert w.missing_samples == 10 * CHUNK and w.gap_fraction == pytest.approx(0.2)
    assert not w.complete
    grid = _grid(w)
    in_gap = (grid >= 2.0 * RATE) & (grid < 2.2 * RATE)
    assert np.all(w.samples[in_gap] == 0.0)
    np.testing.assert_allclose(_device_index(w)[~in_gap], grid[~in_gap], atol=0.01)


def test_late_audio_window_asked_before_and_after_it_arrives() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    chunks = _device_stream(2.0)
    for chunk in chunks[:90]:  # audio up to 1.8 s
        ring.push(chunk)
    assert not ring.ready(2.0)
    early = ring.window(2.0)
    assert early.missing_samples == round(0.2 * RATE)
    assert np.all(early.samples[-round(0.2 * RATE) :] == 0.0)
    for chunk in chunks[90:]:
        ring.push(chunk)
    assert ring.ready(2.0)
    late = ring.window(2.0)
    assert late.complete
    np.testing.assert_allclose(_device_index(late), _grid(late), atol=0.01)


def test_out_of_order_chunk_fills_its_hole() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    chunks = _device_stream(2.0)
    for chunk in chunks[:50] + chunks[51:]:
        ring.push(chunk)
    assert not ring.window(2.0).complete
    ring.push(chunks[50])  # arrives last, belongs at 1.0 s
    assert ring.late_chunks == 1
    w = ring.window(2.0)
    assert w.complete
    np.testing.assert_allclose(_device_index(w), _grid(w), atol=0.01)


def test_ring_wraps_and_drops_audio_older_than_its_capacity() -> None:
    ring = AudioRing(RATE, capacity_s=1.0)
    chunks = _device_stream(3.5)
    for chunk in chunks:
        ring.push(chunk)
    w = ring.window(3.5)  # the newest second, stored across the wrap point
    assert w.complete
    np.testing.assert_allclose(_device_index(w), _grid(w), atol=0.01)
    old = ring.window(2.0)  # [1.0, 2.0): overwritten long ago
    assert old.missing_samples == RATE and np.all(old.samples == 0.0)
    half = ring.window(3.0)  # [2.0, 3.0): only [2.5, 3.0) is still held
    assert half.missing_samples == RATE // 2
    ring.push(chunks[10])  # 0.2 s: older than the capacity
    assert ring.dropped_chunks == 1 and ring.dropped_samples == CHUNK
    np.testing.assert_allclose(_device_index(ring.window(3.5)), _grid(w), atol=0.01)


def test_offset_shifts_the_window_and_readiness() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    for chunk in _device_stream(3.0):
        ring.push(chunk)
    w = ring.window(2.0, duration=0.5, offset=-0.25)
    assert len(w.samples) == RATE // 2
    assert w.start == pytest.approx(1.25) and w.end == pytest.approx(1.75)
    np.testing.assert_allclose(_device_index(w), _grid(w), atol=0.01)
    assert ring.ready(2.9, offset=0.1) and not ring.ready(2.9, offset=0.2)


def test_tone_burst_found_where_it_was_played_within_one_sample() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    burst_at = 1.2345  # seconds on the stream clock
    signal = np.zeros(3 * RATE, dtype=np.float32)
    start = round(burst_at * RATE)
    signal[start : start + 160] = np.sin(2 * np.pi * 1000 * np.arange(160) / RATE) * np.hanning(160)
    for first in range(0, len(signal), 256):  # count-based stamps, as every source gives them
        ring.push(AudioChunk("s", first / RATE, signal[first : first + 256], RATE))
    w = ring.window(2.0)
    envelope = np.convolve(np.abs(w.samples), np.ones(160), mode="valid")
    found = round(w.start * RATE) + int(np.argmax(envelope))  # grid index of the burst's start
    assert abs(found - round(burst_at * RATE)) <= 1


def test_bad_chunks_are_refused() -> None:
    ring = AudioRing(RATE)
    with pytest.raises(ValueError, match="resample"):
        ring.push(AudioChunk("s", 0.0, np.zeros(10, np.float32), 48000))
    with pytest.raises(ValueError, match="mono"):
        ring.push(AudioChunk("s", 0.0, np.zeros((10, 2), np.float32), RATE))
    with pytest.raises(ValueError, match="does not fit"):
        ring.window(1.0, duration=11.0)

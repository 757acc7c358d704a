"""Health numbers: whole-run percentiles from a mergeable histogram, rolling ones that expire,
a frame rate that falls to 0, and audio warm-up told apart from real discontinuities."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from ddavs_rt.capture.types import AudioChunk
from ddavs_rt.runtime.health import (
    RollingWindow,
    StreamCounters,
    histogram_percentiles_ms,
    new_latency_histogram,
    record_ms,
)
from ddavs_rt.sync import AudioRing


def test_whole_run_percentiles_cover_every_frame_not_the_last_thousand() -> None:
    counters = StreamCounters()
    slow = [100.0 + i * 0.01 for i in range(3000)]  # the first 3000 frames: ~100-130 ms
    fast = [10.0] * 1000  # the last 1000: 10 ms
    for value in slow + fast:
        counters.record_sent(value, 5.0)
    rolling, run, _ = counters.latency_percentiles()
    everything = np.array(slow + fast)
    for got, q in zip(run, (50, 95, 99)):
        # HDR histogram with 3 significant digits: within 0.1 % of numpy's percentile of all values
        assert got == pytest.approx(np.percentile(everything, q, method="lower"), rel=2e-3)
    assert run[0] > 100.0  # the last 1000 frames alone would say 10 ms
    assert counters.processed == 4000


def test_histograms_of_two_streams_merge_into_the_percentiles_of_both() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2.0, 20.0, 5000), rng.gamma(5.0, 30.0, 3000)  # ms, two differently loaded streams
    ha, hb = new_latency_histogram(), new_latency_histogram()
    for value in a:
        record_ms(ha, value)
    for value in b:
        record_ms(hb, value)
    merged = new_latency_histogram()
    merged.add(ha)
    merged.add(hb)
    both = np.concatenate([a, b])
    for got, q in zip(histogram_percentiles_ms(merged), (50, 95, 99)):
        assert got == pytest.approx(np.percentile(both, q, method="lower"), rel=2e-3)
    assert merged.get_total_count() == len(both)
    assert all(math.isnan(v) for v in histogram_percentiles_ms(new_latency_histogram()))


def test_rolling_percentiles_expire_instead_of_going_stale() -> None:
    window = RollingWindow(seconds=10.0)
    for i in range(20):
        window.add(50.0 + i, now=100.0 + i * 0.1)
    assert window.percentiles((50,), now=102.0)[0] == pytest.approx(59.5)
    assert math.isnan(window.percentiles((50,), now=200.0)[0])  # no frame in the last 10 s: "-"


def test_fps_falls_to_zero_when_frames_stop() -> None:
    counters = StreamCounters(rate_window_s=0.05)
    for _ in range(5):
        counters.record_sent(10.0, 1.0)
        time.sleep(0.002)
    time.sleep(0.2)  # longer than the rate window: whatever the machine's load, no frame is in it
    assert counters.fps() == 0.0


RATE = 16000


def _chunk(first: int, length: int) -> AudioChunk:
    return AudioChunk("s", first / RATE, np.ones(length, np.float32), RATE)


def test_windows_before_the_first_audio_are_warm_up_and_a_hole_later_is_a_gap() -> None:
    ring = AudioRing(RATE, capacity_s=4.0)
    before = ring.window(0.2)  # no audio yet: all warm-up
    assert before.missing_samples == RATE and before.warmup_samples == RATE and before.gap_samples == 0
    for k in range(0, 2 * RATE, 320):  # 0 .. 2 s, then a hole of 0.2 s, then 2.2 .. 3 s
        ring.push(_chunk(k, 320))
    for k in range(round(2.2 * RATE), 3 * RATE, 320):
        ring.push(_chunk(k, 320))
    early = ring.window(0.3)  # [-0.7, 0.3): 0.7 s before the stream's audio began
    assert early.missing_samples == round(0.7 * RATE) and early.warmup and early.gap_samples == 0
    full = ring.window(1.5)
    assert full.complete and not full.warmup
    hole = ring.window(2.5)  # [1.5, 2.5) holds the 0.2 s hole
    assert hole.gap_samples == round(0.2 * RATE) and not hole.warmup
    assert ring.gaps == 1


def test_microphone_overflows_reach_the_stream_health() -> None:
    import threading

    from ddavs_rt.capture.microphone import MicrophoneSource
    from ddavs_rt.capture.synthetic import SyntheticSource
    from ddavs_rt.runtime.stream import Stream

    stream = Stream("cam", RATE, 2.0, threading.Event())
    mic = MicrophoneSource(None, "cam-mic", sample_rate=RATE)  # not started: no device is opened
    stream.attach(SyntheticSource(stream_id="cam"), mic)
    assert stream.health().mic_overflows == 0
    mic.overflows = 2  # what the PortAudio callback counts on `status.input_overflow` (a fault we cannot cause)
    assert stream.health().mic_overflows == 2
    stream.attach(SyntheticSource(stream_id="cam"), None)
    assert stream.health().mic_overflows == 0


def test_a_header_counts_its_own_frame_s_warm_up_window_not_one_frame_late(checkpoint) -> None:
    import threading

    from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.runtime.runner import Runtime
    from support.rtsp_server import free_port

    config = RuntimeConfig(sources=[SyntheticSourceConfig(id="a", fps=10)], overlay=False,
                           publish=f"tcp://127.0.0.1:{free_port()}")
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1))
    headers = []
    stop = threading.Event()

    def keep(_sid, header, _png, _overlay) -> None:
        headers.append(header)
        if header.frame_time > 1.5:  # past the first second: windows are whole
            stop.set()

    runtime.scheduler.on_published.append(keep)
    try:
        runtime.start()
        runtime.run(stop)
    finally:
        runtime.close()
    first = headers[0]
    assert first.seq == 0 and first.frame_time < 1.0
    assert first.audio.warmup_windows == 1  # its own window reaches before the stream began
    assert first.audio.incomplete_windows == 0 and first.audio.ring_gaps == 0
    late = [h for h in headers if h.audio_window.start >= 0.0]
    assert late and all(h.audio_window.complete for h in late)
    assert headers[-1].audio.warmup_windows == sum(1 for h in headers if h.audio_window.start < 0.0)
    assert headers[-1].audio.incomplete_windows == 0

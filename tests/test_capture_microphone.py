"""MicrophoneSource on a real PortAudio stream from a private PulseAudio null sink."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ddavs_rt.capture.microphone import MicrophoneSource
from ddavs_rt.errors import SourceError
from support.pulse import write_wav


def test_missing_microphone_is_a_one_line_error_listing_devices():
    with pytest.raises(SourceError) as info:
        MicrophoneSource("no-such-microphone-xyz", "mic").start()
    message = str(info.value)
    assert message.startswith("microphone 'no-such-microphone-xyz' not found; available input devices:")
    assert "\n" not in message


def test_tone_played_into_the_sink_is_captured_at_the_model_rate(pulse_server, tmp_path):
    tone_hz, seconds = 1000.0, 1.5
    t = np.arange(int(48000 * seconds)) / 48000
    wav = write_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * tone_hz * t))
    source = MicrophoneSource("pulse", "mic", sample_rate=16000, audio_queue_size=10_000)
    source.start()
    try:
        deadline = time.monotonic() + 15
        while source.health().audio_chunks == 0 and time.monotonic() < deadline:
            source.raise_if_failed()
            time.sleep(0.05)
        assert source.health().audio_chunks > 0, "no audio arrived from the PulseAudio sink"
        played_at = source.clock()
        player = pulse_server.play(wav)
        player.wait(timeout=20)
        time.sleep(0.7)  # let the tail of the tone through the device latency
        chunks = source.drain_audio()
        now = source.clock()
    finally:
        source.stop()
    assert source.error is None
    assert {c.sample_rate for c in chunks} == {16000}
    times = np.array([c.time for c in chunks])
    assert np.all(np.diff(times) > 0)
    assert max(abs(b.time - a.end_time) for a, b in zip(chunks, chunks[1:])) < 1e-3  # contiguous
    assert abs(chunks[-1].end_time - now) < 1.0  # close to real time on the stream clock
    signal = np.concatenate([c.samples for c in chunks])
    loud = np.flatnonzero(np.abs(signal) > 0.1)
    assert len(loud) > 0, "the tone was not captured"
    onset = times[0] + loud[0] / 16000
    print(f"tone onset stamped {onset - played_at:+.3f} s after paplay started")
    assert -0.05 < onset - played_at < 1.0  # not before it was played (less the input latency)
    middle = signal[loud[0] + 1600: loud[0] + 1600 + 16000]  # 1 s inside the burst
    freqs = np.fft.rfftfreq(len(middle), 1 / 16000)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(middle)))] - tone_hz) < 5
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), abs=0.05)

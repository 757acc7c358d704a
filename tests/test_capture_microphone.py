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


def test_native_chatter_on_fd_2_goes_to_debug_and_other_output_is_kept(capfd, caplog):
    """The fd-2 capture around a microphone reopen: PortAudio/ALSA lines (written by C to the
    file descriptor, not through Python) are logged at DEBUG; anything else still reaches stderr."""
    import logging
    import os

    from ddavs_rt.capture.native_stderr import quiet_native_stderr

    with caplog.at_level(logging.DEBUG, logger="ddavs_rt.capture.native_stderr"):
        with quiet_native_stderr("microphone 'x'"):
            os.write(2, b"ALSA lib pcm_pulse.c:758:(pulse_prepare) PulseAudio: Unable to create stream\n\n")
            os.write(2, b"Expression 'r' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 2097\n")
            os.write(2, b"another thread's warning\n")
        os.write(2, b"after the window\n")
    err = capfd.readouterr().err
    assert "Unable to create stream" not in err and "Expression" not in err
    assert "another thread's warning" in err and "after the window" in err
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("microphone 'x': ALSA lib" in m for m in debug) and any("Expression 'r'" in m for m in debug)


def test_a_hung_sound_server_is_an_outage_and_the_microphone_comes_back(pulse_server):
    """PulseAudio frozen (SIGSTOP): PortAudio reports nothing and its calls may block, yet the
    source declares the outage from the silence of its blocks, and reopens after SIGCONT."""
    from ddavs_rt.capture.base import SourceState
    from ddavs_rt.capture.faults import ReconnectPolicy

    def wait(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            source.raise_if_failed()
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    source = MicrophoneSource("pulse", "mic", audio_queue_size=100_000, reconnect=ReconnectPolicy.from_setting(120))
    source.start()
    try:
        wait(lambda: source.health().audio_chunks > 0, 30, "no audio before the freeze")
        pulse_server.freeze()
        try:
            wait(lambda: source.state == SourceState.RECONNECTING, 60, "the hung server was never noticed")
            assert "delivered no audio" in source.health().error and source.health().reconnects == 1
        finally:
            pulse_server.thaw()
        wait(lambda: source.state == SourceState.RUNNING, 60, "the microphone did not come back")
        count = source.health().audio_chunks
        wait(lambda: source.health().audio_chunks > count + 10, 30, "audio did not flow after the reopen")
        health = source.health()
    finally:
        source.stop()
    assert health.error is None and health.reconnects == 1 and source.error is None

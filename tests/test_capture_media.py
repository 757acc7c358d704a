"""MediaSource on real files written with PyAV and on a real GStreamer RTSP server."""

from __future__ import annotations

import functools
import http.server
import logging
import socket
import threading
import time

import av
import numpy as np
import pytest

from ddavs_rt.capture.base import SourceState
from ddavs_rt.capture.faults import FaultClass, ReconnectPolicy
from ddavs_rt.capture.media import MediaSource
from ddavs_rt.errors import SourceError
from support.media import read_frame_index, write_test_clip
from support.rtsp_server import free_port

AAC_FRAME_S = 1024 / 48000


def play_all(source: MediaSource, timeout: float = 30.0):
    source.start()
    assert source.join(timeout), "the file did not play through"
    return source.video_queue.drain(), source.drain_audio()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_test_clip(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=2.0, fps=25)


def test_file_frames_have_pts_times_and_drawn_indices(clip):
    source = MediaSource(clip.path, "f", realtime=False, video_queue_size=500, audio_queue_size=500)
    frames, _ = play_all(source)
    assert source.state == SourceState.FINISHED and source.error is None
    assert [f.index for f in frames] == list(range(clip.frames))
    assert [read_frame_index(f.image) for f in frames] == list(range(clip.frames))
    assert np.allclose([f.time for f in frames], np.arange(clip.frames) / clip.fps, atol=1e-6)
    assert frames[0].image.shape == (96, 160, 3) and frames[0].image.dtype == np.uint8
    assert source.video_fps == pytest.approx(25.0, rel=1e-3)


def test_file_audio_is_model_rate_and_tone_lands_at_its_time(clip):
    source = MediaSource(clip.path, "f", sample_rate=16000, realtime=False, video_queue_size=500, audio_queue_size=500)
    _, chunks = play_all(source)
    assert source.has_audio
    assert {c.sample_rate for c in chunks} == {16000}
    assert all(c.samples.dtype == np.float32 and c.samples.ndim == 1 for c in chunks)
    # Chunks are contiguous on the stream clock: each starts where the previous ended.
    gaps = [b.time - a.end_time for a, b in zip(chunks, chunks[1:])]
    assert max(abs(g) for g in gaps) < 1e-9
    signal = np.concatenate([c.samples for c in chunks])
    assert abs(len(signal) / 16000 - 2.0) < 2 * AAC_FRAME_S
    onset = chunks[0].time + np.argmax(np.abs(signal) > 0.1) / 16000
    assert abs(onset - clip.tone_start) <= AAC_FRAME_S
    # The burst is the right tone: its spectrum peaks at 1 kHz.
    start = int((onset - chunks[0].time) * 16000)
    burst = signal[start:start + int(0.15 * 16000)]
    freqs = np.fft.rfftfreq(len(burst), 1 / 16000)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(burst)))] - clip.tone_hz) < 10


def test_file_without_audio_runs_with_has_audio_false(tmp_path):
    silent = write_test_clip(tmp_path / "noaudio.mp4", seconds=0.4, audio=False)
    source = MediaSource(silent.path, "f", realtime=False, video_queue_size=100)
    frames, chunks = play_all(source)
    assert source.has_audio is False and chunks == []
    assert len(frames) == silent.frames and source.state == SourceState.FINISHED


def test_slow_consumer_drops_oldest_frames_and_counts_them(clip):
    source = MediaSource(clip.path, "f", realtime=False, video_queue_size=3, audio_queue_size=500)
    frames, _ = play_all(source)
    assert [f.index for f in frames] == [clip.frames - 3, clip.frames - 2, clip.frames - 1]
    assert source.health().video_dropped == clip.frames - 3


def test_loop_keeps_the_clock_running_forward(tmp_path):
    short = write_test_clip(tmp_path / "short.mp4", seconds=0.4, fps=25)
    seen = []
    source = MediaSource(short.path, "f", realtime=False, loop=True, on_video=seen.append)
    source.start()
    deadline = time.monotonic() + 20
    while len(seen) < 3 * short.frames + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    source.stop()
    times = np.array([f.time for f in seen])
    assert len(times) >= 3 * short.frames
    assert np.allclose(np.diff(times), 1 / short.fps, atol=1e-6)  # one frame step, also at the seams
    assert [read_frame_index(f.image) for f in seen[: 2 * short.frames]] == list(range(short.frames)) * 2


def test_realtime_pacing_plays_at_the_recorded_rate(tmp_path):
    short = write_test_clip(tmp_path / "paced.mp4", seconds=0.8, fps=25, audio=False)
    source = MediaSource(short.path, "f", realtime=True, video_queue_size=100)
    frames, _ = play_all(source)
    # Pacing can only slow emission down, so a lower bound holds on any machine.
    assert frames[-1].wall_time - frames[0].wall_time >= 0.9 * (frames[-1].time - frames[0].time)


def test_missing_file_is_a_one_line_source_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist") as info:
        MediaSource(tmp_path / "nope.mp4", "f").start()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["random", "truncated", "midway"])
def test_corrupt_file_is_a_one_line_source_error(tmp_path, clip, kind):
    bad = tmp_path / f"{kind}.mp4"
    if kind == "random":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        bad.write_bytes(clip.path.read_bytes()[:3000])
    else:  # the middle quarter overwritten: it opens and plays, then fails part-way
        data = clip.path.read_bytes()
        n = len(data)
        noise = np.random.default_rng(0).integers(0, 256, n // 4, dtype=np.uint8).tobytes()
        bad.write_bytes(data[: n // 2] + noise + data[n // 2 + n // 4:])
    source = MediaSource(bad, "f", realtime=False)
    with pytest.raises(SourceError, match="corrupt") as info:
        source.start()
        source.join(10)
        source.raise_if_failed()
    assert "\n" not in str(info.value) and str(bad) in str(info.value)


def test_file_without_video_is_a_source_error(tmp_path):
    path = tmp_path / "tone.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(SourceError, match="has no video stream"):
        MediaSource(path, "f").start()


def test_refused_rtsp_url_without_reconnect_raises_redacted_error(caplog):
    url = f"rtsp://admin:hunter22@127.0.0.1:{free_port()}/live"
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError, match="refused the connection") as info:
        MediaSource(url, "cam", reconnect=False, open_timeout=5).start()
    assert "hunter22" not in str(info.value) and "admin:***@127.0.0.1" in str(info.value)
    assert "hunter22" not in caplog.text


def test_refused_rtsp_url_with_reconnect_retries_then_gives_up_as_a_transient_fault(caplog):
    url = f"rtsp://admin:hunter22@127.0.0.1:{free_port()}/live"
    policy = ReconnectPolicy(first_timeout_s=1.5, backoff_initial_s=0.05, backoff_max_s=0.2)
    source = MediaSource(url, "cam", open_timeout=5, reconnect=policy)
    with caplog.at_level(logging.DEBUG):
        source.start()  # a network source that is down at start-up is retried, not fatal
        assert source.state == SourceState.RECONNECTING
        assert source.join(30), "the source never gave up"
    health = source.health()
    attempts = [r for r in caplog.records if "attempt" in r.getMessage() and "failed" in r.getMessage()]
    assert len(attempts) >= 3  # retried several times ...
    assert health.reconnects == 1 and health.video_frames == 0  # ... within one outage
    assert source.state == SourceState.ERROR and source.fault is FaultClass.TRANSIENT
    assert "gave up" in health.error and "refused" in health.error and "hunter22" not in health.error
    assert "hunter22" not in caplog.text


def test_rtsp_frames_arrive_and_resume_after_server_restart(rtsp_server, caplog):
    url = rtsp_server.url.replace("rtsp://", "rtsp://viewer:s3cretpw@")
    seen = []
    audio = []
    source = MediaSource(url, "cam", read_timeout=3, open_timeout=10, backoff_initial=0.2,
                         on_video=seen.append, on_audio=audio.append)

    def wait_for(count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(seen) < count and time.monotonic() < deadline:
            source.raise_if_failed()
            time.sleep(0.05)
        assert len(seen) >= count, f"only {len(seen)} frames arrived"

    with caplog.at_level(logging.INFO):
        source.start()
        try:
            wait_for(10)
            assert source.has_audio
            rtsp_server.stop()
            rtsp_server.start()
            # Frames buffered before the kill may still trickle out: count only after a reconnect.
            deadline = time.monotonic() + 30
            while source.health().reconnects < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert source.health().reconnects >= 1, "the source never noticed the server was gone"
            wait_for(len(seen) + 10)
        finally:
            source.stop()
    assert source.health().reconnects >= 1
    times = [f.time for f in seen]
    assert all(b > a for a, b in zip(times, times[1:])), "the stream clock ran backwards across the reconnect"
    assert audio and {c.sample_rate for c in audio} == {16000}
    assert seen[-1].image.shape == (96, 160, 3)
    assert "lost:" in caplog.text and "reconnected after" in caplog.text and "s3cretpw" not in caplog.text
    assert "viewer:***@127.0.0.1" in caplog.text


def test_silent_server_times_out_with_a_one_line_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts TCP, never speaks RTSP
        url = f"rtsp://127.0.0.1:{listener.getsockname()[1]}/live"
        source = MediaSource(url, "cam", reconnect=False, open_timeout=1, read_timeout=1)
        with pytest.raises(SourceError, match="did not answer within 1 s") as info:
            source.start()
    assert "\n" not in str(info.value)


def test_http_source_plays_a_served_file(clip):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.path.parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{clip.path.name}"
        source = MediaSource(url, "web", reconnect=False, video_queue_size=500, audio_queue_size=500)
        source.start()
        assert source.join(30)
    finally:
        server.shutdown()
        server.server_close()
    frames = source.video_queue.drain()
    assert source.state == SourceState.FINISHED and source.has_audio
    assert [read_frame_index(f.image) for f in frames] == list(range(clip.frames))
    assert np.allclose([f.time for f in frames], np.arange(clip.frames) / clip.fps, atol=1e-6)

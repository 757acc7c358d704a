"""The streaming runtime with real parts: a real engine, real sources, real ZeroMQ on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from ddavs_rt.capture.types import VideoFrame
from ddavs_rt.config import MediaSourceConfig, ModelConfig, RuntimeConfig, SyntheticSourceConfig, load_config
from ddavs_rt.engine import open_engine
from ddavs_rt.errors import SourceError
from ddavs_rt.publish.schema import decode_message
from ddavs_rt.runtime.runner import Runtime
from ddavs_rt.runtime.stream import Stream
from support.media import write_test_clip
from support.rtsp_server import free_port

REPO = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / "ddavs-rt")


class RecordingEngine:
    """A real engine whose inputs are kept, so a test can see the windows the runtime cut."""

    def __init__(self, engine) -> None:
        self.inner = engine
        self.spec = engine.spec
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.prepared: list[tuple[int, int]] = []  # (max_batch asked for, infer calls made before it)

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        self.calls.append((frames.copy(), audio.copy()))
        return self.inner.infer(frames, audio)

    def prepare(self, max_batch: int) -> None:
        self.prepared.append((max_batch, len(self.calls)))
        self.inner.prepare(max_batch)

    def close(self) -> None:
        self.inner.close()


def _frame(index: int, t: float) -> VideoFrame:
    return VideoFrame("s", index, t, time.time(), np.zeros((8, 8, 3), np.uint8))


def test_stream_serves_the_newest_frame_and_counts_the_ones_it_replaced() -> None:
    wake = threading.Event()
    stream = Stream("s", 16000, 5.0, wake)
    for i in range(5):
        stream.on_video(_frame(i, i * 0.04))
    assert wake.is_set()
    frame = stream.take()
    assert frame is not None and frame.index == 4
    assert stream.frames_dropped == 4
    assert stream.take() is None  # nothing queued behind it


def _run_runtime(runtime: Runtime, seconds: float, until=None) -> None:
    """Run for `seconds`, or, with `until`, until `until()` holds (checked every 0.1 s; `seconds`
    is then only the cap), so that a starved machine slows the test instead of failing it."""
    stop = threading.Event()
    runtime.start()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    watcher = None
    if until is not None:
        def watch() -> None:
            while not stop.wait(0.1):
                if until():
                    stop.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    try:
        runtime.run(stop)
    finally:
        stop.set()
        timer.cancel()
        if watcher is not None:
            watcher.join(5)


def test_file_replay_windows_hold_the_tone_where_the_clip_has_it(checkpoint: Path, tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "tone.mp4", seconds=2.4, fps=25, tone_start=1.3, tone_seconds=0.3)
    engine = RecordingEngine(open_engine(checkpoint, backend="torch", threads=1))
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id="file", location=str(clip.path), realtime=True)],
        publish=f"tcp://127.0.0.1:{free_port()}", overlay=False, audio_wait_ms=200,
    )
    runtime = Runtime(config, engine)
    frames_seen: list[float] = []
    original_publish = runtime.scheduler._publish

    def spy(stream, frame, window, logits, t_infer, infer_ms):  # record which frame got which window
        frames_seen.append(window.end)
        return original_publish(stream, frame, window, logits, t_infer, infer_ms)

    runtime.scheduler._publish = spy
    try:
        _run_runtime(runtime, 6.0)
    finally:
        runtime.close()
    audio = np.concatenate([a for _, a in engine.calls])  # [N, S]
    assert len(frames_seen) == len(audio) >= 10
    rate = engine.spec.sample_rate
    checked = 0
    for end, window in zip(frames_seen, audio):
        start = end - 1.0
        lo, hi = clip.tone_start, clip.tone_start + clip.tone_seconds
        tone_lo, tone_hi = max(lo, start), min(hi, end)
        if tone_hi - tone_lo < 0.1:
            continue
        # inside the tone (20 ms margin for codec edges): loud; well outside it: near silence
        inside = window[int((tone_lo - start + 0.02) * rate): int((tone_hi - start - 0.02) * rate)]
        outside_hi = window[int((tone_hi - start + 0.05) * rate):] if tone_hi < end - 0.1 else np.zeros(1)
        outside_lo = window[: max(1, int((tone_lo - start - 0.05) * rate))] if tone_lo > start + 0.1 else np.zeros(1)
        assert np.sqrt(np.mean(inside**2)) > 0.1, (end, tone_lo, tone_hi)
        assert np.abs(outside_hi).max() < 0.05 and np.abs(outside_lo).max() < 0.05, (end, tone_lo, tone_hi)
        checked += 1
    assert checked >= 3


def test_two_streams_share_one_engine_in_batches(checkpoint: Path) -> None:
    engine = RecordingEngine(open_engine(checkpoint, backend="torch", threads=1))
    config = RuntimeConfig(
        sources=[SyntheticSourceConfig(id="a", seed=1, fps=10), SyntheticSourceConfig(id="b", seed=2, fps=10)],
        publish=f"tcp://127.0.0.1:{free_port()}", overlay=False, batch_deadline_ms=40,
    )
    runtime = Runtime(config, engine)
    try:
        def both_served() -> bool:
            return all(h.processed > 5 for h in runtime.health()) and any(len(f) == 2 for f, _ in list(engine.calls))

        _run_runtime(runtime, 90.0, until=both_served)
        health = {h.stream_id: h for h in runtime.health()}
    finally:
        runtime.close()
    assert health["a"].processed > 5 and health["b"].processed > 5
    assert max(len(frames) for frames, _ in engine.calls) == 2
    # the engine was asked, once and before any frame, to get ready for batches of up to 2 (the streams)
    assert engine.prepared == [(2, 0)]


def test_a_stream_that_cannot_open_does_not_stop_the_others(checkpoint: Path, tmp_path: Path) -> None:
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id="gone", location=str(tmp_path / "missing.mp4")),
                 SyntheticSourceConfig(id="demo", fps=10)],
        publish=f"tcp://127.0.0.1:{free_port()}", overlay=False,
    )
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1))
    try:
        _run_runtime(runtime, 2.0)
        health = {h.stream_id: h for h in runtime.health()}
    finally:
        runtime.close()
    assert health["demo"].processed > 3
    assert health["gone"].processed == 0 and "missing.mp4" in (health["gone"].error or "")

    only_bad = RuntimeConfig(sources=[MediaSourceConfig(id="gone", location=str(tmp_path / "missing.mp4"))],
                             publish=f"tcp://127.0.0.1:{free_port()}")
    runtime = Runtime(only_bad, open_engine(checkpoint, backend="torch", threads=1))
    with pytest.raises(SourceError, match="missing.mp4"):
        runtime.start()


def _subscriber(port: int) -> zmq.Socket:
    context = zmq.Context.instance()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    socket.setsockopt(zmq.SUBSCRIBE, b"ddavs/")
    socket.connect(f"tcp://127.0.0.1:{port}")
    return socket


def _receive(socket: zmq.Socket, count: int, timeout_s: float) -> list:
    messages = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < count and time.monotonic() < deadline:
        if socket.poll(200):
            messages.append(socket.recv_multipart())
    return messages


def test_demo_command_publishes_valid_messages_to_a_plain_subscriber(checkpoint: Path, tmp_path: Path) -> None:
    port = free_port()
    stats = tmp_path / "stats.json"
    socket = _subscriber(port)
    process = subprocess.Popen(
        [EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch",
         "--publish", f"tcp://127.0.0.1:{port}", "--stats-json", str(stats), "--stats-interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        parts = _receive(socket, 25, timeout_s=120)
        time.sleep(1.5)  # at least one live stats line
        process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        output, _ = process.communicate(timeout=60)
    finally:
        socket.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert len(parts) == 25
    decoded = [decode_message(p) for p in parts]
    seqs = [d.header.seq for d in decoded]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for d in decoded:
        assert parts[0][0] == b"ddavs/demo"
        assert d.mask.shape == (d.header.mask.height, d.header.mask.width)
        assert d.overlay is not None and d.overlay.shape[:2] == d.mask.shape
        assert d.header.ground_truth is not None and 0.0 <= d.header.ground_truth["j"] <= 1.0
        steps = d.header.frame_time * 25.0  # frames of a 25 fps source
        assert abs(steps - round(steps)) < 1e-6
    assert "live J" in output and "fps" in output
    final = next(line for line in output.splitlines() if line.startswith("final [demo]"))
    assert " run J " in final  # the whole run's accuracy, not the last interval's
    health = json.loads(stats.read_text())
    assert health[0]["stream_id"] == "demo" and health[0]["processed"] >= 25


def test_sigterm_stops_the_runtime_cleanly(checkpoint: Path, tmp_path: Path) -> None:
    port = free_port()
    stats = tmp_path / "stats.json"
    socket = _subscriber(port)
    process = subprocess.Popen(
        [EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch",
         "--publish", f"tcp://127.0.0.1:{port}", "--stats-json", str(stats)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert _receive(socket, 1, timeout_s=60), "no message before SIGTERM"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        socket.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "final [demo]" in output
    assert json.loads(stats.read_text())[0]["processed"] >= 1
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--camera", "/dev/video99"], "camera /dev/video99"),
        (["--file", "/nonexistent/clip.mp4"], "clip.mp4"),
        (["--mic", "default"], "--mic pairs a microphone with one video source"),
        (["--camera", "rtsp://127.0.0.1:1/x"], "as --rtsp URL"),
        (["--demo", "--reconnect", "soon"], "--reconnect 'soon'"),
        (["--demo", "--checkpoint", "/nonexistent/model"], "/nonexistent/model"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(arguments: list[str], expected: str, checkpoint: Path) -> None:
    if "--checkpoint" not in arguments:
        arguments = [*arguments, "--checkpoint", str(checkpoint), "--backend", "torch"]
    result = subprocess.run([EXE, *arguments, "--publish", f"tcp://127.0.0.1:{free_port()}", "-q"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddavs-rt: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr


@pytest.mark.parametrize("variant", ["ddeseg", "sdavs"])
def test_demo_runs_the_comparison_variants_from_their_config_alone(variant: str, tmp_path: Path) -> None:
    from ddavs_rt.engine.random_weights import write_random_checkpoint

    config = Path(__file__).resolve().parents[1] / "configs" / "model" / f"{variant}-tiny.yaml"
    folder = write_random_checkpoint(config, tmp_path / variant, seed=1)
    port = free_port()
    socket = _subscriber(port)
    process = subprocess.Popen(
        [EXE, "--demo", "--checkpoint", str(folder), "--backend", "torch", "--publish", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        parts = _receive(socket, 10, timeout_s=120)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        socket.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert len(parts) == 10
    for d in (decode_message(p) for p in parts):
        assert d.header.model_id.startswith(f"{variant}-tiny@")
        assert d.mask.shape == (d.header.mask.height, d.header.mask.width)


def test_the_final_line_reports_the_whole_run_not_the_last_interval() -> None:
    from dataclasses import replace

    from ddavs_rt.runtime.cli import format_health
    from ddavs_rt.runtime.health import StreamCounters, StreamHealthSnapshot

    counters = StreamCounters()
    for j, f in ((0.9, 0.8), (0.7, None), (0.5, 0.6)):  # None: no sounding object, F skips it
        counters.record_truth(j, f)
    assert counters.take_truth() == pytest.approx((0.7, 0.7))
    counters.record_truth(0.1, 0.2)  # a short last interval, as when the run stops
    assert counters.take_truth() == pytest.approx((0.1, 0.2))
    assert counters.take_truth() == (None, None)  # the interval resets
    run_j, run_f = counters.run_truth()  # the run does not
    assert run_j == pytest.approx((0.9 + 0.7 + 0.5 + 0.1) / 4) and run_f == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    snapshot = StreamHealthSnapshot(
        stream_id="demo", source_state="running", processed=4, fps=25.0, frames_dropped=0,
        silent_windows=0, publisher_dropped=0, reconnects=0, latency_rolling_p50_ms=1.0, latency_rolling_p95_ms=1.0,
        latency_rolling_p99_ms=1.0, infer_rolling_p50_ms=1.0, live_j=0.1, live_f=0.2, error=None, run_j=run_j,
        run_f=run_f, latency_run_p50_ms=2.0, latency_run_p95_ms=3.0, latency_run_p99_ms=4.0,
    )
    assert "live J 0.100 F 0.200 J&F 0.150" in format_health(snapshot)
    assert "latency (last 10 s) p50 1 p95 1 p99 1 ms" in format_health(snapshot)  # rolling, labelled so
    assert "latency (run) p50 2 p95 3 p99 4 ms" in format_health(snapshot, final=True)
    assert f"run J {run_j:.3f} F {run_f:.3f} J&F {(run_j + run_f) / 2:.3f}" in format_health(snapshot, final=True)
    assert "run J" in format_health(replace(snapshot, run_f=None), final=True)

"""Supervision with real servers and devices: one of two real RTSP servers killed and restarted,
a camera dying beside a real PulseAudio microphone, a microphone paired with a file, a real
PulseAudio microphone removed (its null sink unloaded) and restored while the real CLI runs.

Waits are on events with generous limits; measured recovery times are printed (the benchmark
bench/faults.py records them), and only a loose bound is asserted.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ddavs_rt.config import MediaSourceConfig, RuntimeConfig
from ddavs_rt.engine import open_engine
from ddavs_rt.publish.subscriber import Subscriber
from ddavs_rt.runtime.runner import EXIT_TRANSIENT_FAULT, Runtime
from support.dying_camera import dying_camera
from support.media import write_test_clip
from support.pulse import write_wav
from support.rtsp_server import RtspServer, free_port, system_rtsp_available


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_one_of_two_rtsp_servers_killed_and_restarted(checkpoint: Path) -> None:
    reason = system_rtsp_available()
    if reason is not None:
        pytest.skip(reason)
    servers = {"a": RtspServer(free_port(), fps=10), "b": RtspServer(free_port(), fps=10)}
    for server in servers.values():
        server.start()
    port = free_port()
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id=name, location=server.url, read_timeout_s=3.0) for name, server in servers.items()],
        publish=f"tcp://127.0.0.1:{port}", overlay=False, send_hwm=1000,
    )
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1))
    arrivals: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}  # (monotonic, seq)
    stop = threading.Event()
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")

    def listen() -> None:
        while not stop.is_set():
            message = subscriber.recv(0.2)
            if message is not None:
                arrivals[message.header.stream_id].append((time.monotonic(), message.header.seq))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    runner = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    stream_a = runtime.streams[0]
    try:
        runtime.start()
        runner.start()
        _wait_until(lambda: len(arrivals["a"]) >= 10 and len(arrivals["b"]) >= 10, 90, "no frames were published")
        servers["a"].stop()
        killed_at = time.monotonic()
        # health decays while nothing arrives: fps 0, no latency, the outage named
        _wait_until(lambda: stream_a.health().fps == 0.0 and stream_a.health().source_state == "reconnecting",
                    60, "stream a's health did not decay during the outage")
        down = stream_a.health()
        assert math.isnan(down.latency_rolling_p95_ms) and down.error and down.reconnects == 1
        time.sleep(4.0)  # several refused attempts: still one outage
        servers["a"].start()
        back_at = time.monotonic()
        _wait_until(lambda: any(t > back_at for t, _ in arrivals["a"]), 60, "stream a did not publish again")
        recovered_s = min(t for t, _ in arrivals["a"] if t > back_at) - back_at
        _wait_until(lambda: stream_a.health().fps > 0, 30, "stream a's fps did not come back")
        up = stream_a.health()
        count_b = len(arrivals["b"])
        _wait_until(lambda: len(arrivals["b"]) >= count_b + 5, 30, "stream b stopped")
    finally:
        stop.set()
        runner.join(timeout=15)
        listener.join(timeout=5)
        subscriber.close()
        runtime.close()
        for server in servers.values():
            server.stop()
    print(f"stream a published again {recovered_s:.2f} s after its server was back (outage {back_at - killed_at:.1f} s)")
    # the issue asks for 3 s; a loaded 2-core machine gets a looser bound (bench/faults.py records the number)
    assert recovered_s < 10.0
    assert up.error is None and up.reconnects == 1 and up.source_state == "running"
    seqs_b = [seq for _, seq in arrivals["b"]]
    assert np.all(np.diff(seqs_b) == 1), "the other stream lost messages while one server was down"
    times_b = [t for t, _ in arrivals["b"] if killed_at <= t <= back_at]
    assert len(times_b) >= 5 and max(np.diff(times_b)) < 2.0, "the other stream stalled during the outage"


def test_a_camera_that_dies_beside_a_live_microphone_ends_the_process_non_zero(
    pulse_server, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    from ddavs_rt.cli import main

    camera = dying_camera(frames=40, interval_s=0.05)
    monkeypatch.setattr(cv2, "VideoCapture", camera)
    began = time.monotonic()
    code = main(["--camera", "test-camera", "--mic", "pulse", "--checkpoint", str(checkpoint), "--backend", "torch",
                 "--publish", f"tcp://127.0.0.1:{free_port()}", "--reconnect", "2", "--duration", "300"])
    assert code == EXIT_TRANSIENT_FAULT
    assert camera.frames == 0 and not camera.alive  # it did run, then died
    assert time.monotonic() - began < 200  # it ended on its own, long before --duration


def test_a_microphone_pairs_with_a_file_on_one_clock(pulse_server, checkpoint: Path, tmp_path: Path) -> None:
    rate = 16000
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10, audio=False)
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(int(48000 * 0.4)) / 48000)
    wav = write_wav(tmp_path / "tone.wav", np.concatenate([tone, np.zeros(48000 // 2)]))
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id="av", location=str(clip.path), loop=True, mic="pulse")],
        publish=f"tcp://127.0.0.1:{free_port()}", overlay=False, audio_wait_ms=300,
    )
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1))
    stream = runtime.streams[0]
    video, mic = stream.video_source, stream.audio_source
    assert mic is not None and mic is not video and not video.has_audio
    calls: list[tuple[float, np.ndarray]] = []
    publish = runtime.scheduler._publish

    def spy(stream_, frame, window, logits, t_infer, infer_ms):
        calls.append((frame.time, window.samples.copy()))
        return publish(stream_, frame, window, logits, t_infer, infer_ms)

    runtime.scheduler._publish = spy
    stop = threading.Event()
    runner = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    try:
        runtime.start()
        runner.start()
        _wait_until(lambda: len(calls) >= 5, 60, "the paired stream published nothing")
        played_at = mic.clock()
        pulse_server.play(wav).wait(timeout=20)
        time.sleep(1.5)
    finally:
        stop.set()
        runner.join(timeout=15)
        runtime.close()
    onsets = []
    for frame_time, samples in calls:
        loud = np.flatnonzero(np.abs(samples) > 0.1)
        if len(loud) and loud[0] >= rate // 100 and frame_time > played_at:
            onsets.append(frame_time - 1.0 + loud[0] / rate)
    assert len(onsets) >= 2, "the microphone's tone did not reach the file stream's windows"
    # the file's frames are stamped on the microphone's clock: every window puts the onset at
    # one stream time (2 ms), after the tone was started and within the device latency
    assert np.ptp(onsets) < 0.002, onsets
    assert -0.05 < onsets[0] - played_at < 1.0


# ------------------------------------------------------------------------------ a microphone outage
EXE = str(Path(sys.executable).parent / "ddavs-rt")


class _LiveRun:
    """The real CLI as a subprocess (--file clip --loop --mic pulse), its stdout/stderr lines and
    the headers it publishes, collected by threads."""

    def __init__(self, clip: Path, checkpoint: Path, reconnect: str) -> None:
        port, self.metrics_port = free_port(), free_port()
        self.subscriber = Subscriber(f"tcp://127.0.0.1:{port}")
        self.headers: list[tuple[float, object]] = []  # (monotonic arrival, FrameHeader)
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[str] = []
        self._stop = threading.Event()
        self.process = subprocess.Popen(
            [EXE, "--file", str(clip), "--loop", "--mic", "pulse", "--reconnect", reconnect,
             "--checkpoint", str(checkpoint), "--backend", "torch", "--threads", "1", "--no-overlay",
             "--publish", f"tcp://127.0.0.1:{port}", "--stats-interval", "0.5",
             "--metrics", f"127.0.0.1:{self.metrics_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # PULSE_SERVER is inherited
        )
        self._threads = [threading.Thread(target=target, daemon=True)
                         for target in (self._listen, self._read_stdout, self._read_stderr)]
        for thread in self._threads:
            thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.subscriber.recv(0.2)
            if message is not None:
                self.headers.append((time.monotonic(), message.header))

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout.append((time.monotonic(), line.rstrip("\n")))

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        """Wait for an event of the run; fail at once (with its output) if the process ended."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.process.poll() is None, f"{what}: the run ended ({self.process.returncode}):\n{self.output()}"
            assert time.monotonic() < deadline, f"{what}:\n{self.output()}"
            time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the run's Prometheus endpoint (None when absent)."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return None

    def after(self, moment: float) -> list:
        return [header for t, header in self.headers if t > moment]

    def status_after(self, moment: float) -> list[str]:
        return [line for t, line in self.stdout if t > moment and line.startswith("[file0]")]

    def output(self) -> str:
        return "\n".join(line for _, line in self.stdout) + "\n" + "\n".join(self.stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.subscriber.close()


def test_a_microphone_removed_and_restored_mid_run_is_reopened_and_video_never_stops(
    pulse_server, checkpoint: Path, tmp_path: Path
) -> None:
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10, audio=False)
    run = _LiveRun(clip.path, checkpoint, reconnect="120")
    try:
        run.wait_until(lambda: any(h.audio_window.complete for _, h in run.headers), 180,
                    "no complete audio window was published: the microphone's audio never arrived")
        pulse_server.remove_sink()  # the microphone is gone, as when a USB microphone is unplugged
        removed_at = time.monotonic()
        # the outage is shown: the status line says the microphone is reconnecting ...
        run.wait_until(lambda: any("mic reconnecting" in line for line in run.status_after(removed_at)), 60,
                    "the status line never showed the microphone reconnecting")
        assert run.metric("ddavs_microphone_state", stream="file0", state="reconnecting") == 1.0
        assert run.metric("ddavs_source_state", stream="file0", state="running") == 1.0  # the video is fine
        # ... and video goes on, with windows flagged as missing audio
        run.wait_until(lambda: sum(not h.audio_window.complete for h in run.after(removed_at)) >= 10, 90,
                    "video stopped while the microphone was down")
        pulse_server.restore_sink()
        restored_at = time.monotonic()
        run.wait_until(lambda: any(h.audio_window.complete for h in run.after(restored_at)), 120,
                    "audio windows never became complete again after the microphone came back")
        recovered_at = time.monotonic()
        run.wait_until(lambda: any("mic reconnecting" not in line and "reconnects 1" in line for line in run.status_after(recovered_at)),
                    60, "the status line did not clear the outage while counting it")
        assert run.metric("ddavs_microphone_state", stream="file0", state="running") == 1.0
        assert run.metric("ddavs_reconnects_total", stream="file0") == 1.0
        run.process.send_signal(signal.SIGTERM)
        code = run.process.wait(timeout=90)
    finally:
        run.close()
    output = run.output()
    assert code == 0, output
    headers = [h for _, h in run.headers]
    seqs = [h.seq for h in headers]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "video messages were lost during the outage"
    assert not any(h.silent_audio for h in headers)  # the stream has a microphone, it was only down
    first_complete = next(i for i, h in enumerate(headers) if h.audio_window.complete)
    incomplete_seen = sum(not h.audio_window.complete for h in headers[first_complete:])
    at_removal = max((h for t, h in run.headers if t <= removed_at), key=lambda h: h.seq)
    last = headers[-1]
    # the header's counters include every incomplete window since the stream began, this one too
    assert last.audio.incomplete_windows - at_removal.audio.incomplete_windows >= incomplete_seen - 1
    assert incomplete_seen >= 10
    assert last.audio.ring_gaps > at_removal.audio.ring_gaps  # the hole in the audio is one discontinuity
    # the audio is back for good: every window after the first whole one holds its second of sound
    # but for a few ms at most (a reopened stream's newest block can arrive just after the frame)
    recovered = [h for t, h in run.headers if t > recovered_at]
    assert recovered and all(h.audio_window.gap_fraction <= 0.05 for h in recovered), [h.audio_window for h in recovered]
    # one WARNING when the outage began, one when it ended; no ERROR, no traceback
    began = [line for line in run.stderr if "reconnecting (for at most 120 s)" in line]
    ended = [line for line in run.stderr if "reconnected after" in line]
    assert len(began) == 1 and "microphone 'pulse'" in began[0] and len(ended) == 1, output
    assert not [line for line in run.stderr if " E " in line or "Traceback" in line], output
    assert not [line for line in run.stderr if "Unable to create stream" in line], output  # reopen chatter: DEBUG
    finals = [line for _, line in run.stdout if line.startswith("final [file0]")]
    assert len(finals) == 1 and "reconnects 1" in finals[0], output


def test_a_microphone_that_never_comes_back_ends_the_run_with_exit_1_and_one_line(
    pulse_server, checkpoint: Path, tmp_path: Path
) -> None:
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10, audio=False)
    run = _LiveRun(clip.path, checkpoint, reconnect="3")
    try:
        run.wait_until(lambda: any(h.audio_window.complete for _, h in run.headers), 180,
                    "no complete audio window was published: the microphone's audio never arrived")
        pulse_server.remove_sink()
        code = run.process.wait(timeout=120)  # it ends by itself, past --reconnect
    finally:
        run.close()
    output = run.output()
    assert code == EXIT_TRANSIENT_FAULT, output
    faults = [line for line in run.stderr if " E " in line or line.startswith("ddavs-rt: error:")]
    assert len(faults) == 1, output
    assert "microphone 'pulse' gave up after" in faults[0] and "limit 3 s" in faults[0], faults[0]
    assert "check that the microphone is plugged in" in faults[0], faults[0]
    # each failed reopen's PortAudio/ALSA chatter went to DEBUG, not the operator's terminal
    assert not [line for line in run.stderr if "Unable to create stream" in line or "Expression 'r'" in line], output

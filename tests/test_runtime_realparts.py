"""The runtime against a real RTSP server (killed and restarted) and a real PulseAudio microphone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddavs_rt.capture.microphone import MicrophoneSource
from ddavs_rt.capture.synthetic import SyntheticSource
from ddavs_rt.config import MediaSourceConfig, ModelConfig, RuntimeConfig, SyntheticSourceConfig, load_config
from ddavs_rt.engine import open_engine
from ddavs_rt.publish.subscriber import Subscriber
from ddavs_rt.runtime.runner import Runtime
from support.pulse import write_wav
from support.rtsp_server import free_port

REPO = Path(__file__).resolve().parents[1]


def test_rtsp_stream_resumes_after_a_server_restart_while_another_stream_goes_on(rtsp_server, checkpoint):
    port = free_port()
    url = rtsp_server.url.replace("rtsp://", "rtsp://viewer:s3cret@")
    config = RuntimeConfig(
        sources=[MediaSourceConfig(id="cam", location=url, read_timeout_s=3.0),
                 SyntheticSourceConfig(id="demo", fps=10)],
        publish=f"tcp://127.0.0.1:{port}", overlay=False,
    )
    runtime = Runtime(config, open_engine(checkpoint, backend="torch", threads=1))
    arrivals: dict[str, list[tuple[float, float]]] = {"cam": [], "demo": []}  # (monotonic, frame_time)
    stop = threading.Event()
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")

    def listen() -> None:
        while not stop.is_set():
            message = subscriber.recv(0.2)
            if message is not None:
                arrivals[message.header.stream_id].append((time.monotonic(), message.header.frame_time))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    runner = threading.Thread(target=runtime.run, args=(stop,), daemon=True)

    def wait_until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    try:
        runtime.start()
        runner.start()
        wait_until(lambda: len(arrivals["cam"]) >= 10, 60, "no RTSP frames were published")
        rtsp_server.stop()
        killed_at = time.monotonic()
        cam_stream = runtime.streams[0]
        wait_until(lambda: cam_stream.health().reconnects >= 1, 30, "the RTSP source never reconnected")
        rtsp_server.start()
        wait_until(lambda: any(t > killed_at + 1.0 for t, _ in arrivals["cam"]), 60, "RTSP frames did not resume")
        resumed_at = min(t for t, _ in arrivals["cam"] if t > killed_at + 1.0)
    finally:
        stop.set()
        runner.join(timeout=15)
        listener.join(timeout=5)
        subscriber.close()
        health = {h.stream_id: h for h in runtime.health()}
        runtime.close()
    # the synthetic stream kept publishing through the outage: no silence longer than 1 s
    demo = [t for t, _ in arrivals["demo"] if killed_at - 1.0 <= t <= resumed_at + 1.0]
    assert len(demo) >= 5
    # (the camera's outage lasts several seconds: its read timeout is 3 s, then a reconnect)
    assert max(np.diff(demo)) < 2.0, "the other stream was interrupted while the camera was down"
    assert health["cam"].reconnects >= 1
    assert "s3cret" not in (health["cam"].error or "")
    cam_times = [ft for _, ft in arrivals["cam"]]
    assert all(b > a for a, b in zip(cam_times, cam_times[1:])), "frame times ran backwards"


def test_microphone_windows_place_a_played_tone_consistently_with_frame_times(pulse_server, checkpoint, tmp_path):
    rate = 16000
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(int(48000 * 0.4)) / 48000)
    wav = write_wav(tmp_path / "tone.wav", np.concatenate([tone, np.zeros(48000 // 2)]))
    engine = open_engine(checkpoint, backend="torch", threads=1)
    calls: list[tuple[float, np.ndarray]] = []
    config = RuntimeConfig(sources=[SyntheticSourceConfig(id="av", fps=10)],
                           publish=f"tcp://127.0.0.1:{free_port()}", overlay=False, audio_wait_ms=300)
    runtime = Runtime(config, engine)
    stream = runtime.streams[0]
    # this stream's picture comes from the synthetic scene, its sound from the real microphone
    video = SyntheticSource(seed=3, stream_id="av", fps=10, on_video=stream.on_video)
    mic = MicrophoneSource("pulse", "av-mic", sample_rate=rate, on_audio=stream.on_audio)
    stream.attach(video, mic)
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
        time.sleep(1.5)  # the microphone is running and the first windows are served
        played_at = mic.clock()
        pulse_server.play(wav).wait(timeout=20)
        time.sleep(1.5)
    finally:
        stop.set()
        runner.join(timeout=15)
        runtime.close()
    onsets = []  # (frame time, stream time of the tone onset seen in that frame's window)
    for frame_time, samples in calls:
        loud = np.flatnonzero(np.abs(samples) > 0.1)
        # an onset has quiet before it: a window that starts inside the tone can open on one of
        # the sine's few quiet samples (the tone's phase against the 0.1 s frame grid is chance),
        # which is not an onset; 10 ms of quiet is far longer than any gap inside the tone
        if len(loud) and loud[0] >= rate // 100 and frame_time > played_at:
            onsets.append((frame_time, frame_time - 1.0 + loud[0] / rate))
    assert len(onsets) >= 2, "the tone did not reach the engine's windows"
    stamped = np.array([onset for _, onset in onsets])
    # every window that holds the onset puts it at the same stream time: within 2 ms
    assert np.ptp(stamped) < 0.002, stamped
    # and that time is after the tone was started, within the device latency
    assert -0.05 < stamped[0] - played_at < 1.0

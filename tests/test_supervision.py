"""Supervision (issue 12): fault classes on real PyAV errors, honest exit codes of the real CLI,
a camera that dies beside a live microphone, a file corrupted mid-way, SIGTERM with recording.

Real parts throughout: real files, the real GStreamer RTSP server, real refused ports, a real
PulseAudio microphone, the CLI as a subprocess. The one double is a camera at the OpenCV
boundary, for the one fault that cannot be caused otherwise (a camera that stops delivering).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import zmq

from ddavs_rt.capture.base import SourceState
from ddavs_rt.capture.faults import FaultClass, Outage, ReconnectPolicy, TransientSourceError, classify_av_error
from ddavs_rt.capture.media import MediaSource
from ddavs_rt.errors import SourceError
from ddavs_rt.runtime.recorder import read_segment
from ddavs_rt.runtime.runner import EXIT_BAD_INPUT, EXIT_TRANSIENT_FAULT, RunResult, StreamEnd
from support.media import write_test_clip
from support.rtsp_server import free_port

EXE = str(Path(sys.executable).parent / "ddavs-rt")


def _av_open_error(location: str) -> Exception:
    options = {"rtsp_transport": "tcp", "timeout": "5000000"} if location.startswith("rtsp") else {}
    try:
        av.open(location, options=options, timeout=(5, 5)).close()
    except Exception as error:  # noqa: BLE001 - the error is what the test inspects
        return error
    raise AssertionError(f"{location} opened")


# ------------------------------------------------------------------------------ classifier
def test_a_missing_file_is_permanent(tmp_path: Path) -> None:
    error = _av_open_error(str(tmp_path / "nope.mp4"))
    assert isinstance(error, av.error.FileNotFoundError)
    assert classify_av_error(error, network=False) is FaultClass.PERMANENT


def test_a_refused_port_is_transient() -> None:
    error = _av_open_error(f"rtsp://127.0.0.1:{free_port()}/live")
    assert isinstance(error, av.error.ConnectionRefusedError)
    assert classify_av_error(error, network=True) is FaultClass.TRANSIENT


def test_a_404_path_on_a_real_rtsp_server_is_permanent(rtsp_server) -> None:
    url = rtsp_server.url.replace("/test", "/no-such-path")
    error = _av_open_error(url)
    assert classify_av_error(error, network=True) is FaultClass.PERMANENT
    # the source refuses it at once, with the fix, and does not retry it
    source = MediaSource(url, "cam", open_timeout=5)
    with pytest.raises(SourceError, match="not found") as info:
        source.start()
    assert not isinstance(info.value, TransientSourceError) and "path" in str(info.value)
    assert source.state == SourceState.ERROR and source.fault is FaultClass.PERMANENT


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:notaport/x", "rtsp:///x", "rtsp://"])
def test_a_malformed_url_is_permanent(url: str) -> None:
    source = MediaSource(url, "cam", open_timeout=5)
    with pytest.raises(SourceError) as info:
        source.start()
    assert not isinstance(info.value, TransientSourceError)
    assert "\n" not in str(info.value) and "check its form" in str(info.value)


def test_a_transient_outage_gives_up_after_its_first_frame_timeout() -> None:
    policy = ReconnectPolicy.from_setting(None, backoff_initial_s=0.05, backoff_max_s=0.1)
    assert policy.limit(delivered=False) == 20.0 and policy.limit(delivered=True) == 300.0
    forever = ReconnectPolicy.from_setting("forever")
    assert forever.limit(delivered=False) is None and forever.limit(delivered=True) is None
    source = MediaSource(f"rtsp://127.0.0.1:{free_port()}/x", "cam", open_timeout=5,
                         reconnect=ReconnectPolicy(first_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.1))
    source.start()
    assert source.join(20), "a refused source retried past its timeout"
    assert source.fault is FaultClass.TRANSIENT and "gave up" in str(source.error)


def test_a_stop_during_a_reconnect_attempt_is_a_stop_not_a_give_up() -> None:
    """stop() (SIGTERM) while an attempt outlasts the limit must not turn into a transient fault
    (exit 1): the source ends stopped, with no error."""
    import socket

    silent = socket.socket()  # accepts connections and never answers: each attempt takes its timeout
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x"
    try:
        source = MediaSource(url, "cam", open_timeout=3, read_timeout=3,
                             reconnect=ReconnectPolicy(first_timeout_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.1))
        source.start()  # the start-up attempt times out: retried in the reader thread
        deadline = time.monotonic() + 60
        while source.state != SourceState.RECONNECTING:
            assert time.monotonic() < deadline and source.state != SourceState.ERROR, source.error
            time.sleep(0.02)
        time.sleep(1.0)  # inside the next attempt, which ends past the 0.5 s limit
        source.stop(timeout=30)
    finally:
        silent.close()
    assert source.state == SourceState.STOPPED and source.error is None, source.error


def test_backoff_is_jittered_below_its_cap() -> None:
    policy = ReconnectPolicy(backoff_initial_s=0.25, backoff_max_s=2.0)
    outage = Outage(policy, delivered=True, rng=random.Random(7))
    delays = [outage.next_delay() for _ in range(12)]
    bases = [min(2.0, 0.25 * 2**i) for i in range(12)]
    assert all(base / 2 <= d <= base for d, base in zip(delays, bases))
    assert max(delays) <= 2.0 and len(set(delays)) == len(delays)  # capped, and jittered


def test_the_exit_code_is_the_worst_ending() -> None:
    clean = [StreamEnd("a", "finished"), StreamEnd("b", "stopped")]
    assert RunResult(clean).exit_code == 0
    lost = StreamEnd("c", "fault", FaultClass.TRANSIENT, "gave up")
    typo = StreamEnd("d", "fault", FaultClass.PERMANENT, "not found")
    assert RunResult([*clean, lost]).exit_code == EXIT_TRANSIENT_FAULT
    assert RunResult([lost, typo]).exit_code == EXIT_BAD_INPUT
    assert RunResult(clean, engine_error="engine failed").exit_code == 3


# ------------------------------------------------------------------------------ the CLI
def _run_cli(arguments: list[str], checkpoint: Path, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    result = subprocess.run(
        [EXE, *arguments, "--checkpoint", str(checkpoint), "--backend", "torch",
         "--publish", f"tcp://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=timeout,
    )
    return result, time.monotonic() - began


def _fault_lines(result: subprocess.CompletedProcess, needle: str) -> list[str]:
    """Lines that report the fault: the CLI's error line or an ERROR log line (not status lines)."""
    return [line for line in (result.stdout + result.stderr).splitlines()
            if needle in line and (line.startswith("ddavs-rt: error:") or " E " in line)]


def test_a_404_path_exits_2_at_once_with_one_line(rtsp_server, checkpoint: Path) -> None:
    url = rtsp_server.url.replace("/test", "/wrong")
    result, _ = _run_cli(["--rtsp", url, "--duration", "120"], checkpoint, timeout=110)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = _fault_lines(result, "not found")
    assert len(lines) == 1 and "/wrong" in lines[0], result.stderr
    assert "publishing on" not in result.stdout  # nothing was served


def test_publishing_on_is_printed_only_after_the_bind(checkpoint: Path) -> None:
    taken = zmq.Context.instance().socket(zmq.PUB)
    taken.linger = 0
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    try:
        result = subprocess.run(
            [EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch", "--publish", f"tcp://127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        taken.close()
    assert result.returncode == 2, result.stdout + result.stderr
    assert "publishing on" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddavs-rt: error:")]
    assert len(errors) == 1 and str(port) in errors[0], result.stderr


def test_a_refused_url_gives_up_after_the_default_first_frame_timeout(checkpoint: Path) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    result, elapsed = _run_cli(["--rtsp", url, "--duration", "300"], checkpoint, timeout=200)
    assert result.returncode == EXIT_TRANSIENT_FAULT, result.stdout + result.stderr
    lines = _fault_lines(result, "gave up")
    assert len(lines) == 1 and "refused" in lines[0] and "limit 20 s" in lines[0], result.stderr
    assert elapsed < 150  # it ended on its own, long before --duration
    assert " I " not in result.stderr  # library logging stays at WARNING without -v


def test_a_file_corrupted_midway_exits_non_zero(tmp_path: Path, checkpoint: Path) -> None:
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, fps=25)
    data = clip.path.read_bytes()
    n = len(data)
    noise = np.random.default_rng(1).integers(0, 256, n // 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(data[: n // 2] + noise + data[n // 2 + n // 4:])
    result, _ = _run_cli(["--file", str(bad)], checkpoint, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    assert len(_fault_lines(result, "corrupt")) == 1, result.stderr
    # the whole file is a clean end
    good, _ = _run_cli(["--file", str(clip.path)], checkpoint, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr


def test_sigterm_closes_every_recording_segment(checkpoint: Path, tmp_path: Path) -> None:
    port = free_port()
    record = tmp_path / "rec"
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.linger = 0
    socket.setsockopt(zmq.SUBSCRIBE, b"ddavs/")
    socket.connect(f"tcp://127.0.0.1:{port}")
    process = subprocess.Popen(
        [EXE, "--demo", "--checkpoint", str(checkpoint), "--backend", "torch", "--publish", f"tcp://127.0.0.1:{port}",
         "--record", str(record), "--record-rotate-s", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        received = 0
        deadline = time.monotonic() + 120
        while received < 20 and time.monotonic() < deadline:
            if socket.poll(200):
                socket.recv_multipart()
                received += 1
        assert received >= 20, "the demo did not publish"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        socket.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    stream_dir = record / "demo"
    segments = sorted(p for p in stream_dir.iterdir())
    assert segments and not [p for p in segments if p.name.endswith(".partial")], segments
    frames = [frame for segment in segments for frame in read_segment(segment)]
    seqs = [header.seq for header, _ in frames]
    assert len(frames) >= 20 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


# ------------------------------------------------------------------------------ undecodable files
def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's single error line (asserting there is exactly one and nothing else reports it)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("ddavs-rt: error:")]
    assert len(errors) == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_an_audio_only_file_passed_as_video_exits_2_naming_what_it_holds(tmp_path: Path, checkpoint: Path) -> None:
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for _ in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    result, _ = _run_cli(["--file", str(path)], checkpoint, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    line = _one_error_line(result)
    assert str(path) in line and "has no video stream" in line and "audio (aac)" in line, line
    assert "publishing on" not in result.stdout


def test_a_video_codec_this_ffmpeg_cannot_decode_exits_2_naming_the_file(tmp_path: Path, checkpoint: Path) -> None:
    # A real AVI written by PyAV (MPEG-4 Part 2, FourCC FMP4), then its FourCC rewritten to one no
    # FFmpeg decoder claims: the container is intact, the codec is unknown to this build. (Every
    # video codec PyAV can write here has a decoder or no demuxer; checked with av.codecs_available.)
    written = tmp_path / "mpeg4.avi"
    with av.open(str(written), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(10):
            image = np.full((48, 64, 3), i * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = written.read_bytes()
    assert data.count(b"FMP4") == 2  # the stream header's handler and the format's compression
    path = tmp_path / "unknown-codec.avi"
    path.write_bytes(data.replace(b"FMP4", b"QZQZ"))
    with av.open(str(path)) as probe:  # the premise: a video stream FFmpeg has no decoder for
        assert len(probe.streams.video) == 1 and probe.streams.video[0].codec_context is None
        with pytest.raises(av.error.DecoderNotFoundError):
            next(probe.decode(video=0))
    result, _ = _run_cli(["--file", str(path)], checkpoint, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    line = _one_error_line(result)
    assert str(path) in line and "has no decoder in this FFmpeg build" in line and "re-encode" in line, line


def _eperm_corrupted_clip(tmp_path: Path) -> Path:
    """An MP4 with random bytes over a quarter of its middle, such that FFmpeg's AAC decoder
    answers some of its packets with EPERM (PyAV: av.error.PermissionError)."""
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, fps=25)
    data = clip.path.read_bytes()
    n = len(data)
    noise = np.random.default_rng(0).integers(0, 256, n // 4, dtype=np.uint8).tobytes()
    bad = tmp_path / "random-bytes.mp4"
    bad.write_bytes(data[: n // 2] + noise + data[n // 2 + n // 4:])
    return bad


def test_a_randomly_corrupted_file_says_corrupt_and_what_to_do_not_permission_error(
    tmp_path: Path, checkpoint: Path
) -> None:
    bad = _eperm_corrupted_clip(tmp_path)
    errors: set[type] = set()
    with av.open(str(bad)) as probe:  # the premise: FFmpeg itself reports EPERM on this file
        for packet in probe.demux(*probe.streams):
            try:
                packet.decode()
            except av.error.FFmpegError as error:
                errors.add(type(error))
    assert av.error.PermissionError in errors, errors
    result, _ = _run_cli(["--file", str(bad)], checkpoint, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    lines = _fault_lines(result, str(bad))
    assert len(lines) == 1, result.stderr
    assert "is corrupt" in lines[0] and "replace it with a good copy" in lines[0], lines[0]
    assert "PermissionError" not in result.stderr and "not permitted" not in result.stderr, result.stderr
    assert "publishing on" in result.stdout  # it played what decodes before the fault


def test_a_truncated_file_says_truncated_and_what_to_do(tmp_path: Path, checkpoint: Path) -> None:
    clip = write_test_clip(tmp_path / "clip.mkv", seconds=3.0, fps=25)  # Matroska: duration in the header
    data = clip.path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    result, _ = _run_cli(["--file", str(cut)], checkpoint, timeout=120)
    assert result.returncode == EXIT_BAD_INPUT, result.stdout + result.stderr
    lines = _fault_lines(result, str(cut))
    assert len(lines) == 1 and "is truncated" in lines[0] and "replace it with a good copy" in lines[0], result.stderr

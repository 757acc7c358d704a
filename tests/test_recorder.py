"""Recording: PNG masks + JSON-lines headers per segment, rotation, and nothing partial after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ddavs_rt.publish.schema import AudioWindowInfo, FrameHeader, MaskInfo, decode_message, encode_message
from ddavs_rt.runtime.recorder import HEADERS, MASKS, Recorder, read_segment, recover


def _frame(stream: str, seq: int) -> tuple[FrameHeader, bytes, np.ndarray]:
    mask = np.zeros((16, 16), np.uint8)
    mask[seq % 16, :] = 1  # each frame's mask is different
    header = FrameHeader(stream_id=stream, seq=seq, frame_time=seq * 0.04, capture_wall_time=time.time(),
                         audio_window=AudioWindowInfo(start=0.0, end=1.0), model_id="m",
                         mask=MaskInfo(height=16, width=16))
    parts = encode_message(header, mask)
    return header, parts[2], mask


def _segments(folder: Path, stream: str) -> list[Path]:
    return sorted(p for p in (folder / stream).iterdir() if not p.name.startswith("."))


def test_frames_round_trip_per_stream_and_rotate_by_size(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, rotate_mb=0.004)  # a few frames per segment
    sent = {}
    for seq in range(30):
        for stream in ("a", "b"):
            header, png, mask = _frame(stream, seq)
            recorder.on_published(stream, header, png, None)
            sent[(stream, seq)] = mask
    recorder.close()
    assert recorder.dropped == 0 and recorder.written == 60
    for stream in ("a", "b"):
        segments = _segments(tmp_path, stream)
        assert len(segments) >= 3  # rotated
        assert not list((tmp_path / stream).glob(".*"))  # every segment closed under its final name
        seqs = []
        for segment in segments:
            for header, png in read_segment(segment):
                assert header.stream_id == stream
                decoded = decode_message([header.topic, header.to_json().encode(), png, b""])
                np.testing.assert_array_equal(decoded.mask, sent[(stream, header.seq)])
                seqs.append(header.seq)
            assert segment.name.endswith(f"-{read_segment(segment)[0][0].seq:08d}")
        assert seqs == list(range(30))


def test_time_rotation_closes_a_segment_after_its_age(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, rotate_s=0.3)
    for seq in range(6):
        header, png, _ = _frame("cam", seq)
        recorder.on_published("cam", header, png, None)
        time.sleep(0.12)
    recorder.close()
    segments = _segments(tmp_path, "cam")
    assert len(segments) >= 2
    assert sum(len(read_segment(s)) for s in segments) == 6


_WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from test_recorder import _frame
from ddavs_rt.runtime.recorder import Recorder
recorder = Recorder({folder!r}, rotate_mb=0.01)
seq = 0
while True:
    header, png, _ = _frame("cam", seq)
    recorder.on_published("cam", header, png, None)
    seq += 1
    if seq == 40:
        print("written", flush=True)
    time.sleep(0.002)
"""


def test_a_killed_recorder_leaves_only_whole_segments_and_valid_lines(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    code = _WRITER.format(tests=str(Path(__file__).parent), folder=str(folder))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "written"
        time.sleep(0.5)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    stream_dir = folder / "cam"
    partials = [p for p in stream_dir.iterdir() if p.name.endswith(".partial")]
    finals = _segments(folder, "cam")
    assert finals, "rotation closed some segments before the kill"
    assert len(partials) <= 1  # only the segment being written when killed
    for segment in finals:  # a final name always holds a finished, fully readable segment
        frames = read_segment(segment)
        assert frames
        assert not list((segment / MASKS).glob(".*.tmp"))
        for header, png in frames:
            assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).shape == (16, 16)
    for partial in partials:  # valid up to its last complete line; each line names a whole mask
        data = (partial / HEADERS).read_bytes()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            seq = json.loads(line)["seq"]
            png = (partial / MASKS / f"{seq:08d}.png").read_bytes()
            assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    # the next recorder finishes what the killed one left
    before = {p.name for p in finals}
    recovered = recover(folder)
    assert len(recovered) == len(partials)
    assert not [p for p in stream_dir.iterdir() if p.name.startswith(".")]
    for segment in recovered:
        assert segment.name not in before
        read_segment(segment)  # every line parses, every mask exists


def test_recover_trims_a_torn_last_line(tmp_path: Path) -> None:
    partial = tmp_path / "cam" / ".20260101T000000Z-00000000.partial"
    (partial / MASKS).mkdir(parents=True)
    header, png, _ = _frame("cam", 0)
    (partial / MASKS / "00000000.png").write_bytes(png)
    (partial / MASKS / ".00000001.png.tmp").write_bytes(png[:10])
    (partial / HEADERS).write_bytes(header.to_json().encode() + b"\n" + b'{"schema": "ddavs-rt/fr')
    [segment] = recover(tmp_path)
    assert segment.name == "20260101T000000Z-00000000"
    assert [h.seq for h, _ in read_segment(segment)] == [0]
    assert not list((segment / MASKS).glob(".*"))


def test_a_dotted_stream_id_stays_inside_the_folder(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "rec")
    header, png, _ = _frame("..", 0)
    recorder.on_published("..", header, png, None)
    recorder.close()
    assert [p.name for p in (tmp_path / "rec").iterdir()] == ["_.."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec"]

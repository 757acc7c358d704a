"""Media fixtures written with PyAV: H.264 video with the frame index drawn into each frame,
and audio that is silent except for a tone burst at a known time.

The frame index is drawn twice: as digits (for a person looking at the file) and as a strip of
16 black/white cells, bit i of the index in cell i (for a test reading it back, robust to
H.264 compression): `read_frame_index(image)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

INDEX_BITS = 16
CELL = 8  # pixels per bit cell (square), drawn along the top rows


@dataclass(frozen=True)
class TestClip:
    path: Path
    fps: int
    frames: int
    sample_rate: int
    tone_start: float | None  # seconds, or None without audio
    tone_seconds: float
    tone_hz: float


def draw_index(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame [H, W, 3] uint8: grey background, the index as bit cells and as digits."""
    image = np.full((height, width, 3), 96, dtype=np.uint8)
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[0:CELL, bit * CELL:(bit + 1) * CELL] = value
    cv2.putText(image, str(index), (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
    return image


def read_frame_index(image: np.ndarray) -> int:
    """The index drawn by `draw_index`, read from the centre of each bit cell."""
    index = 0
    for bit in range(INDEX_BITS):
        cell = image[2:CELL - 2, bit * CELL + 2:(bit + 1) * CELL - 2]
        if cell.mean() > 128:
            index |= 1 << bit
    return index


def write_test_clip(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: int = 25,
    width: int = 160,
    height: int = 96,
    audio: bool = True,
    sample_rate: int = 48000,
    audio_codec: str = "aac",
    tone_start: float = 1.0,
    tone_seconds: float = 0.2,
    tone_hz: float = 1000.0,
) -> TestClip:
    """Write an MP4 (or MKV for PCM audio) clip; returns what was written."""
    path = Path(path)
    frames = int(round(seconds * fps))
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
        astream = None
        if audio:
            astream = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(draw_index(index, width, height), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if astream is not None:
            total = int(round(seconds * sample_rate))
            t = np.arange(total) / sample_rate
            wave = np.zeros(total, dtype=np.float32)
            burst = (t >= tone_start) & (t < tone_start + tone_seconds)
            wave[burst] = 0.5 * np.sin(2 * np.pi * tone_hz * t[burst])
            fmt = "fltp" if audio_codec == "aac" else "s16"
            block = 1024
            for start in range(0, total, block):
                piece = wave[start:start + block]
                data = piece[None, :] if fmt == "fltp" else (piece * 32767).astype(np.int16)[None, :]
                aframe = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = start
                aframe.time_base = Fraction(1, sample_rate)
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return TestClip(path, fps, frames, sample_rate, tone_start if audio else None, tone_seconds, tone_hz)

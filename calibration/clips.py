"""Representative samples for INT8 calibration, read straight from SynthAVS / AVSBench clip folders.

A clip folder holds `frames/{i}.jpg` (RGB frames, one per second) and `audio.wav` (mono PCM,
one second of audio per frame). Sample i of a clip is frame i and the audio window
[i, i + 1) seconds, resampled to the model's rate when the file's differs, and the frame resized
to the model's input size: exactly what the engine sees at run time.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ddavs_rt.errors import DataError


def find_clips(root: str | Path) -> list[Path]:
    """Clip folders under `root` (sorted, so calibration is deterministic)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"calibration data {root} is not a folder; pass a SynthAVS dataset (ddavs-rt synth --out DIR)")
    clips = sorted(p.parent.parent for p in root.rglob("frames/0.jpg") if (p.parent.parent / "audio.wav").is_file())
    clips = [c for c in clips if not c.name.startswith(".")]  # half-written clips of an interrupted writer
    if not clips:
        raise DataError(f"no clip folders (frames/0.jpg + audio.wav) under {root}; generate some with `ddavs-rt synth --out {root} --clips 32`")
    return clips


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (float32 mono samples in [-1, 1], sample rate)."""
    try:
        with wave.open(str(path), "rb") as handle:
            rate, channels, width = handle.getframerate(), handle.getnchannels(), handle.getsampwidth()
            raw = handle.readframes(handle.getnframes())
    except (OSError, wave.Error) as error:
        raise DataError(f"{path}: not a readable PCM WAV ({error})") from None
    if width != 2:
        raise DataError(f"{path}: {8 * width}-bit WAV; calibration reads 16-bit PCM")
    samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channels).mean(axis=1), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear-interpolation resampling (enough for calibration statistics)."""
    if rate == target:
        return samples
    count = int(round(len(samples) * target / rate))
    positions = np.arange(count) * (rate / target)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def clip_samples(clip: Path, size: int, sample_rate: int, window_samples: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame uint8 [size, size, 3] RGB, audio float32 [window_samples]) for each frame of a clip."""
    audio, rate = read_wav(clip / "audio.wav")
    audio = resample(audio, rate, sample_rate)
    index = 0
    while (frame_path := clip / "frames" / f"{index}.jpg").is_file():
        bgr = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{frame_path}: not a readable image")
        frame = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        start = index * sample_rate
        window = audio[start : start + window_samples]
        if len(window) < window_samples:  # the last window of a short file: zero-fill, as the runtime does
            window = np.pad(window, (0, window_samples - len(window)))
        yield frame, window.astype(np.float32)
        index += 1

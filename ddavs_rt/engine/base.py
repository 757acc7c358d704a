"""The engine contract: one small interface shared by the torch, onnxruntime and tensorrt backends.

    engine = open_engine("model.onnx")
    logits = engine.infer(frames, audio)   # uint8 [B, H, W, 3] RGB, float32 [B, S] -> float32 [B, K, h, w]

`Engine.infer` does what every backend needs the same way: it checks the inputs, resizes frames
whose size differs from `spec.input_size` with cv2 (INTER_AREA when shrinking, INTER_LINEAR when
growing; the graph then sees exactly the size it was built for, so logits come back at
`spec.input_size`), and splits a batch larger than `spec.batch_max` into chunks. A backend
implements `_run(frames, audio)` for one chunk that fits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cv2
import numpy as np

from ddavs_rt.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """What an engine expects and gives back."""

    input_size: tuple[int, int]  # (H, W) of the frames the graph takes
    sample_rate: int  # Hz of the audio window
    window_samples: int  # S
    class_names: tuple[str, ...]
    num_classes: int  # K, channels of the logits
    batch_min: int
    batch_max: int
    model_id: str
    precision: str  # fp32 | fp16 | bf16 | int8
    backend: str  # torch | onnxruntime | openvino | tensorrt
    device: str  # cpu | cuda:0 | ...

    @classmethod
    def from_config(cls, cfg: ModelConfig, **fields) -> "EngineSpec":
        return cls(
            input_size=(cfg.input_size, cfg.input_size),
            sample_rate=cfg.sample_rate,
            window_samples=cfg.window_samples,
            class_names=tuple(cfg.class_names),
            num_classes=cfg.decoder.num_classes,
            **fields,
        )


class Engine:
    """Base of the three backends; subclasses set `spec` and implement `_run`."""

    spec: EngineSpec
    choice = None  # the EngineChoice that open_engine made (backend, file, why); None when built directly
    # How many `infer` calls from different threads this engine runs at once to good effect (the
    # scheduler starts that many inference loops). 1: calls are safe to make but gain nothing side
    # by side, or must not overlap (a TensorRT execution context).
    concurrency: int = 1

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """frames uint8 [B, H, W, 3] RGB, audio float32 [B, S] -> logits float32 [B, K, h, w].

        (h, w) is `spec.input_size`; frames of another size are resized with cv2 first.
        """
        frames, audio = self._check(frames, audio)
        batch = frames.shape[0]
        if batch == 0:
            h, w = self.spec.input_size
            return np.zeros((0, self.spec.num_classes, h, w), np.float32)
        step = self.spec.batch_max
        if batch <= step:
            return self._finish(self._run(frames, audio))
        chunks = [self._run(frames[i : i + step], audio[i : i + step]) for i in range(0, batch, step)]
        return self._finish(np.concatenate(chunks, axis=0))

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, max_batch: int) -> None:
        """Make the first call at every batch size up to `max_batch` as fast as later ones. A backend
        that compiles per input shape (OpenVINO's fixed-shape graphs) does that work here, before
        the first frame, instead of stalling the stream that first brings a new batch size."""

    def close(self) -> None:
        """Release the backend's resources (sessions, GPU memory)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.spec
        return f"<{type(self).__name__} {s.model_id} {s.backend}/{s.precision} on {s.device}, batch {s.batch_min}-{s.batch_max}>"

    # ----------------------------------------------------------------------------------------

    def _check(self, frames: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frames = np.asarray(frames)
        audio = np.asarray(audio)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [B, H, W, 3] RGB, got shape {list(frames.shape)}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        s = self.spec.window_samples
        if audio.ndim != 2 or audio.shape[1] != s:
            raise ValueError(f"audio must be [B, {s}] ({s} samples at {self.spec.sample_rate} Hz), got shape {list(audio.shape)}")
        if audio.shape[0] != frames.shape[0]:
            raise ValueError(f"frames and audio batch sizes differ: {frames.shape[0]} vs {audio.shape[0]}")
        frames = resize_frames(frames, self.spec.input_size)
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        return frames, audio

    @staticmethod
    def _finish(logits: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(logits, dtype=np.float32)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [B, H, W, 3] -> uint8 [B, h, w, 3] with cv2 (a no-op when the size already matches)."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames)
    shrinking = frames.shape[1] * frames.shape[2] > h * w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], h, w, 3), np.uint8)
    for i, frame in enumerate(frames):
        out[i] = cv2.resize(frame, (w, h), interpolation=interpolation)
    return out


def batch_sizes(text: str | Sequence[int]) -> list[int]:
    """'1,8,32' -> [1, 8, 32]."""
    if not isinstance(text, str):
        return [int(v) for v in text]
    return [int(part) for part in text.split(",") if part.strip()]

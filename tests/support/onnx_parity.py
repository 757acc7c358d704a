"""Torch vs ONNX Runtime on the same random inputs: the parity check the export tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ddavs_rt.engine.ort_backend import OrtEngine


def torch_and_onnxruntime_logits(model: torch.nn.Module, onnx_path: Path, batch: int, size: int,
                                 window_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(torch logits, ONNX Runtime logits) for `batch` random frames [size, size] and audio windows."""
    rng = np.random.default_rng(batch)
    frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    audio = ((rng.random((batch, window_samples), dtype=np.float32) * 2 - 1) * 0.5).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(frames), torch.from_numpy(audio)).numpy()
    got = OrtEngine(onnx_path, device="cpu", threads=1).infer(frames, audio)
    return expected, got

"""PyTorch backend: a checkpoint folder run eagerly.

CPU: fp32, eager (the reference numbers every other backend is compared against).
GPU: fp16 autocast, and `torch.compile(mode="reduce-overhead")` (CUDA graphs) unless
`compile=False`; compiled graphs are specialised per batch size, so the first call at a new batch
size is slow (warm up with the batch sizes you will use).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from ddavs_rt.atomic import sha256_file
from ddavs_rt.engine.base import Engine, EngineSpec

log = logging.getLogger(__name__)

TORCH_BATCH_MAX = 64  # chunk size for very large batches; the model itself has no limit


def model_id_for(name: str, checkpoint_sha256: str) -> str:
    return f"{name}@{checkpoint_sha256[:12]}"


class TorchEngine(Engine):
    def __init__(self, checkpoint: str | Path, device: str | None = None, compile: bool | None = None,
                 threads: int | None = None) -> None:
        import torch

        from ddavs_rt.model.checkpoint import load_checkpoint

        self.folder = Path(checkpoint)
        self._torch = torch
        if device is None:
            device = "cuda:0" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if threads:
            torch.set_num_threads(threads)
        model, cfg = load_checkpoint(self.folder)
        self.model = model.eval().to(self.device)
        self.cfg = cfg
        on_gpu = self.device.type == "cuda"
        self.fp16 = on_gpu
        if compile is None:
            compile = on_gpu
        self._forward = self.model
        if compile:
            self._forward = torch.compile(self.model, mode="reduce-overhead" if on_gpu else "default", dynamic=False)
        checkpoint_sha = sha256_file(self.folder / "model.safetensors")
        self.spec = EngineSpec.from_config(
            cfg,
            batch_min=1,
            batch_max=TORCH_BATCH_MAX,
            model_id=model_id_for(cfg.name, checkpoint_sha),
            precision="fp16" if self.fp16 else "fp32",
            backend="torch",
            device=str(self.device),
        )
        log.info("torch engine %s on %s (%s, compile=%s)", self.folder, self.device, self.spec.precision, compile)

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        torch = self._torch
        frames_t = torch.from_numpy(frames).to(self.device, non_blocking=True)  # uint8 [B, H, W, 3]
        audio_t = torch.from_numpy(audio).to(self.device, non_blocking=True)  # float32 [B, S]
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.fp16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            logits = self._forward(frames_t, audio_t)  # [B, K, H, W]
        return logits.float().cpu().numpy()

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._forward = None

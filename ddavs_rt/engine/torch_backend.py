"""PyTorch backend: a checkpoint folder run eagerly.

CPU: fp32, eager (the reference numbers every other backend is compared against).
GPU: fp16 autocast, and `torch.compile(mode="reduce-overhead", dynamic=False)` (CUDA graphs) unless
`compile=False`. A compiled graph (and its CUDA graph) is specialised to one batch size, and the
scheduler's batch sizes vary, so a compiled engine runs only a fixed set of batch sizes
(`COMPILED_BATCH_SIZES`, up to the batch max): a batch is padded up to the next one (repeating its
last sample) and the padding dropped from the output. At most that many graphs are compiled, the
recompile limit is raised to fit them, and no size after the first call at each recompiles.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from ddavs_rt.engine.base import Engine, EngineSpec
from ddavs_rt.engine.identity import checkpoint_identity

log = logging.getLogger(__name__)

TORCH_BATCH_MAX = 64  # chunk size for very large batches; the model itself has no limit
COMPILED_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)  # a compiled engine pads each batch up to one of these


def padded_size(count: int, sizes: tuple[int, ...]) -> int:
    """The smallest compiled batch size that holds `count` samples."""
    for size in sizes:
        if size >= count:
            return size
    raise ValueError(f"batch of {count} is larger than the largest compiled size {sizes[-1]}")


class TorchEngine(Engine):
    def __init__(self, checkpoint: str | Path, device: str | None = None, compile: bool | None = None,
                 threads: int | None = None, compile_batch_sizes: tuple[int, ...] = COMPILED_BATCH_SIZES,
                 compile_backend: str | None = None) -> None:
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
        self.compiled_sizes: tuple[int, ...] = ()
        if compile:
            self.compiled_sizes = tuple(sorted({b for b in compile_batch_sizes if 1 <= b <= TORCH_BATCH_MAX}))
            if not self.compiled_sizes:
                raise ValueError(f"compile_batch_sizes {compile_batch_sizes}: need sizes between 1 and {TORCH_BATCH_MAX}")
            import torch._dynamo.config as dynamo_config

            limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
            if getattr(dynamo_config, limit) < len(self.compiled_sizes):
                setattr(dynamo_config, limit, len(self.compiled_sizes))
            options = {"backend": compile_backend} if compile_backend else {"mode": "reduce-overhead" if on_gpu else "default"}
            self._forward = torch.compile(self.model, dynamic=False, **options)
        self.spec = EngineSpec.from_config(
            cfg,
            batch_min=1,
            batch_max=self.compiled_sizes[-1] if self.compiled_sizes else TORCH_BATCH_MAX,
            model_id=checkpoint_identity(self.folder).model_id,  # weights, bank and config
            precision="fp16" if self.fp16 else "fp32",
            backend="torch",
            device=str(self.device),
        )
        log.info("torch engine %s on %s (%s, compile=%s)", self.folder, self.device, self.spec.precision, compile)

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        torch = self._torch
        count = len(frames)
        if self.compiled_sizes and count:
            pad = padded_size(count, self.compiled_sizes) - count
            if pad:  # repeat the last sample up to a compiled size; its outputs are dropped below
                frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
                audio = np.concatenate([audio, np.repeat(audio[-1:], pad, axis=0)])
        frames_t = torch.from_numpy(frames).to(self.device, non_blocking=True)  # uint8 [B, H, W, 3]
        audio_t = torch.from_numpy(audio).to(self.device, non_blocking=True)  # float32 [B, S]
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.fp16 else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            logits = self._forward(frames_t, audio_t)  # [B, K, H, W]
        return logits[:count].float().cpu().numpy()

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._forward = None

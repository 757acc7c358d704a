"""Mixed precision and process-group choices of the trainer, as small functions a CPU can test.

- bf16 autocast only where the GPU computes bf16 natively: `torch.cuda.is_bf16_supported()`
  counts emulation by default, so a V100/T4 would train in slow emulated bf16; those get fp16
  with a grad scaler instead.
- A run saved without a grad scaler (CPU, bf16 GPU) resumes where fp16 needs one: the scaler
  starts fresh instead of failing in `GradScaler.load_state_dict({})`.
- On CUDA the process group is bound to the rank's GPU (`device_id`), so NCCL knows the device
  before the first collective.
- The logged training loss is the mean over all ranks' batches, not rank 0's alone.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def bf16_native() -> bool:
    """True where the current CUDA GPU computes bf16 natively (Ampere and newer)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def amp_dtype(amp: bool, device_type: str, native_bf16: bool | None = None) -> torch.dtype | None:
    """The autocast dtype of a training run: None (fp32) off CUDA or without `amp`, bf16 where the
    GPU has it natively, else fp16 (with a grad scaler)."""
    if not amp or device_type != "cuda":
        return None
    native = bf16_native() if native_bf16 is None else native_bf16
    return torch.bfloat16 if native else torch.float16


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict | None) -> bool:
    """Restore a grad scaler from a saved state; a state saved by a disabled scaler (empty) leaves
    this one fresh. Returns whether anything was loaded."""
    if not state:
        if scaler.is_enabled():
            logger.info("the run was saved without a grad scaler: starting a fresh one")
        return False
    if not scaler.is_enabled():
        return False  # this run does not scale (bf16 or fp32): nothing to restore
    scaler.load_state_dict(state)
    return True


def process_group_options(device_type: str, local_rank: int) -> dict:
    """init_process_group's backend (nccl on CUDA, gloo on the CPU) and, on CUDA, the rank's device."""
    if device_type == "cuda":
        return {"backend": "nccl", "device_id": torch.device("cuda", local_rank)}
    return {"backend": "gloo"}


def mean_across_ranks(sums: dict[str, float], count: int, device: torch.device | str = "cpu") -> dict[str, float]:
    """Per-key means over every rank's batches (sums and batch counts all-reduced); this rank's
    own means without a process group."""
    keys = sorted(sums)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(values)
        totals = values.tolist()
        sums, count = dict(zip(keys, totals[:-1])), int(round(totals[-1]))
    return {key: sums[key] / max(1, count) for key in keys}

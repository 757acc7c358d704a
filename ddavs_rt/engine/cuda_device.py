"""The CUDA device a user named (`--device cuda:N`): its index, checked against the GPUs torch sees.

Every GPU probe (`choose_engine`'s `cuda_usable` / `tensorrt_usable`, TensorRT's availability and
the GPU identity an engine's sidecar is checked against) asks about this index, not cuda:0. torch
is imported only when a probe runs (the torch-free install never gets here with a CUDA device).
"""

from __future__ import annotations

from ddavs_rt.errors import ConfigError


def cuda_index(device: str | None) -> int:
    """N of 'cuda:N'; 0 for 'cuda' and None (the first visible GPU). ConfigError for a malformed one."""
    if device is None or device == "cuda":
        return 0
    prefix, _, number = device.partition(":")
    if prefix != "cuda" or not number.isdigit():
        raise ConfigError(f"--device {device}: expected cpu, cuda or cuda:N (N a GPU index such as 0 or 1)")
    return int(number)


def visible_gpu_count() -> int:
    """How many CUDA GPUs torch sees (0 without a GPU or a CUDA build)."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def require_visible(index: int, count: int) -> None:
    """ConfigError (one line) when GPU `index` is not among the `count` visible ones."""
    if index >= count:
        seen = f"cuda:0..cuda:{count - 1}" if count > 1 else "cuda:0"
        raise ConfigError(
            f"--device cuda:{index}: this machine shows {count} GPU(s) ({seen}); pick one of them "
            "(CUDA_VISIBLE_DEVICES renumbers the GPUs it keeps from 0)"
        )


def visible_cuda_index(device: str | None) -> int | None:
    """The index of the named GPU when torch sees GPUs; None when it sees none (the caller falls
    back to the CPU, as before); ConfigError when the index is beyond the visible GPUs."""
    index = cuda_index(device)
    count = visible_gpu_count()
    if count == 0:
        return None
    require_visible(index, count)
    return index

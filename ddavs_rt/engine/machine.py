"""The machine an engine runs on: physical cores, CPU model, GPU name; used by backends and bench."""

from __future__ import annotations

import os
import platform
import socket
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """Physical CPU cores (not hyper-threads) this process may use; falls back to logical CPUs."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = os.cpu_count() or 1
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            physical = core = None
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((physical or "0", core))
                    physical = core = None
            if core is not None:
                cores.add((physical or "0", core))
    except OSError:
        pass
    count = len(cores) or allowed
    return max(1, min(count, allowed))


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (avx2, avx512_vnni, avx512_bf16, amx_bf16, ...)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


SIMD_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def simd_summary() -> list[str]:
    """The flags that decide CPU engine speed (int8 dot products, bf16, matrix units), in a fixed order."""
    flags = cpu_flags()
    return [flag for flag in SIMD_FLAGS if flag in flags]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _named_gpu(device: str | None):
    """(torch, index) of the GPU a benchmark ran on (N of `--device cuda:N`, else the first visible
    one), or None without torch, without a GPU, or when the box has no GPU N. A malformed device
    is not an error here: it fails where it is used, with its own line."""
    from ddavs_rt.engine.cuda_device import cuda_index
    from ddavs_rt.errors import ConfigError

    try:
        import torch
    except ImportError:  # the torch-free runtime install has none
        return None
    index = 0
    if device is not None and device.startswith("cuda"):
        try:
            index = cuda_index(device)
        except ConfigError:
            pass
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None
    return torch, index


def describe_machine(device: str | None = None) -> dict[str, Any]:
    """CPU, cores, memory, library versions and the GPU (if any) for a benchmark record; `device`
    (`cuda:N`) names the GPU the benchmark ran on (default: the first visible one)."""
    import importlib.util

    import numpy
    import onnxruntime

    try:
        import torch
    except ImportError:  # the torch-free runtime install has none
        torch = None
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_simd": simd_summary(),  # the flags that decide int8 / bf16 speed
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "memory_gib": _memory_gib(),
        "torch": torch.__version__ if torch else None,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "numpy": numpy.__version__,
        "gpu": None,
    }
    if importlib.util.find_spec("openvino") is not None:
        import openvino

        info["openvino"] = openvino.__version__
    gpu = _named_gpu(device)
    if gpu is not None:
        torch, index = gpu
        major, minor = torch.cuda.get_device_capability(index)
        info["gpu"] = {
            "index": index,
            "name": torch.cuda.get_device_name(index),
            "compute_capability": f"{major}.{minor}",
            "cuda": torch.version.cuda,
        }
    try:
        import tensorrt  # noqa: F401  (optional)

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def machine_slug(device: str | None = None) -> str:
    """A short file-name-safe name for this machine: the name of the GPU `device` names (default:
    the first visible one) if any, else the CPU model."""
    name = cpu_model()
    gpu = _named_gpu(device)
    if gpu is not None:
        torch, index = gpu
        name = torch.cuda.get_device_name(index)
    keep = "".join(ch.lower() if ch.isalnum() else "-" for ch in name)
    return "-".join(part for part in keep.split("-") if part)[:48] or "machine"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None

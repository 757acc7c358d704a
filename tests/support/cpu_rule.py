"""What `--backend auto` runs an fp32 graph on, on this machine, by the documented CPU rule
(docs/architecture.md, "Which engine on which machine"): OpenVINO in bf16 where the CPU has AMX
or AVX-512 BF16 and OpenVINO is installed, else ONNX Runtime in fp32. Read from /proc/cpuinfo
here, not from the product's own probe, so a test that uses it checks the rule, not a copy of it."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


BF16_CPU = bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())
AUTO_CPU_BACKEND, AUTO_CPU_PRECISION = (
    ("openvino", "bf16") if BF16_CPU and importlib.util.find_spec("openvino") is not None else ("onnxruntime", "fp32"))

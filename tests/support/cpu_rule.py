"""What `--backend auto` runs an fp32 graph on, on this machine, by the documented CPU rule
(docs/architecture.md, "Which engine on which machine"): OpenVINO in bf16 where the CPU has AMX
or AVX-512 BF16 and OpenVINO is installed, else ONNX Runtime in fp32. The rule is written out
here from the CPU's flags, not taken from `choose_engine`, so a test that uses it checks the rule."""

from __future__ import annotations

import importlib.util

from ddavs_rt.engine.machine import cpu_flags

BF16_CPU = bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
AUTO_CPU_BACKEND, AUTO_CPU_PRECISION = (
    ("openvino", "bf16") if BF16_CPU and importlib.util.find_spec("openvino") is not None else ("onnxruntime", "fp32"))

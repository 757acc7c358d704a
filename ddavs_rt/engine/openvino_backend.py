"""OpenVINO backend: the exported ONNX graph (or an OpenVINO IR `.xml` beside it) on the CPU.

`openvino` is an optional extra (`pip install ddavs-rt[openvino]`), imported only here, lazily.

Precision (`precision=`): `fp32`; `bf16` (OpenVINO's inference precision hint: matrix work in
bfloat16, which only pays on CPUs with AMX or AVX-512 BF16, refused elsewhere so a slow emulated
path is never chosen silently); `int8` is a property of the file, not a hint: an int8 IR written
by `ddavs-rt calibrate --engine openvino` (NNCF post-training quantization, FakeQuantize nodes) or
a Q/DQ ONNX, both of which OpenVINO runs with its int8 kernels. Threads and the performance hint
(`LATENCY`: one request uses every thread; `THROUGHPUT`: several streams) come from the caller
(the runtime config). The sidecar is the one written with the graph, checked like ONNX Runtime's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ddavs_rt.engine.base import Engine, EngineSpec
from ddavs_rt.engine.identity import ModelIdentity, check_onnx_identity
from ddavs_rt.engine.machine import cpu_flags, physical_cores
from ddavs_rt.engine.sidecar import OnnxSidecar, read_onnx_sidecar
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

log = logging.getLogger(__name__)

OPENVINO_MISSING = "OpenVINO is not installed: pip install 'ddavs-rt[openvino]' (or pick --backend onnxruntime)"
HINTS = ("LATENCY", "THROUGHPUT")
PRECISIONS = ("fp32", "bf16", "int8")
IR_SUFFIX = ".xml"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def native_bf16() -> bool:
    """The CPU multiplies bfloat16 natively (AMX or AVX-512 BF16); elsewhere bf16 is emulated and slow."""
    flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & flags)


class OpenVinoEngine(Engine):
    """An exported graph compiled by OpenVINO for the CPU."""

    def __init__(self, path: str | Path, device: str | None = None, threads: int | None = None,
                 precision: str | None = None, hint: str = "LATENCY", expected: ModelIdentity | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise DdavsError(OPENVINO_MISSING) from None
        self.path = Path(path)
        if device is not None and device != "cpu":
            raise ConfigError(f"the openvino backend runs on the CPU here, not {device!r}; use --backend tensorrt or torch for a GPU")
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: not found; export one with `ddavs-rt export --checkpoint DIR --out FILE.onnx`")
        if self.path.suffix not in (".onnx", IR_SUFFIX):
            raise CheckpointError(f"{self.path}: openvino runs an .onnx export or an OpenVINO IR (.xml), not {self.path.suffix!r}")
        self.sidecar: OnnxSidecar = read_onnx_sidecar(self.path)
        check_onnx_identity(self.sidecar, self.path, expected)
        file_precision = self.sidecar.precision
        precision = precision or ("int8" if file_precision == "int8" else "fp32")
        if precision not in PRECISIONS:
            raise ConfigError(f"openvino precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if (precision == "int8") != (file_precision == "int8"):
            raise ConfigError(f"{self.path} is a {file_precision} graph; int8 needs an int8 file "
                              f"(`ddavs-rt calibrate --engine openvino`), other precisions the fp32 export")
        if precision == "bf16" and not native_bf16():
            raise ConfigError("openvino bf16 needs a CPU with AMX or AVX-512 BF16, and this one has neither; use fp32 or int8")
        hint = hint.upper()
        if hint not in HINTS:
            raise ConfigError(f"openvino performance hint {hint!r}: choose {' or '.join(HINTS)}")
        self.threads = threads or physical_cores()
        config = {
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": hint,
            # bf16 where asked; f32 otherwise (OpenVINO would pick bf16 by itself on an AMX CPU)
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{self.path}: OpenVINO cannot compile it ({first}); re-export it with `ddavs-rt export`") from None
        names = [port.get_any_name() for port in self.compiled.inputs]
        if sorted(names) != ["audio", "frames"]:
            raise CheckpointError(f"{self.path}: graph inputs {names} are not (frames, audio); re-export it with `ddavs-rt export`")
        self.request = self.compiled.create_infer_request()
        self._output = self.compiled.output("mask_logits")
        self.spec = EngineSpec.from_config(
            self.sidecar.model_cfg(),
            batch_min=self.sidecar.batch_min,
            batch_max=self.sidecar.batch_max,
            model_id=self.sidecar.model_id,
            precision=precision,
            backend="openvino",
            device="cpu",
        )
        log.info("openvino engine %s: %s, %d threads, hint %s", self.path.name, precision, self.threads, hint)

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        result = self.request.infer({"frames": frames, "audio": audio}, share_inputs=True)
        return np.array(result[self._output], copy=True)

    def close(self) -> None:
        self.request = None
        self.compiled = None

"""ONNX Runtime backend: an `.onnx` file with its sidecar, on the CPU or CUDA provider.

Session options: graph optimisation level ALL, intra-op threads = physical cores (hyper-threads
slow a compute-bound graph down), inter-op threads 1 (the graph is one chain), intra-op spinning
off unless asked for (`spinning=True`): a spinning pool keeps every core busy between operators
and between runs, which the streaming pipeline's own threads (capture, post-processing, overlay,
publishing) need; docs/results/batching.md has the measurement. The CUDA provider
is used when onnxruntime has it and `device` asks for (or does not rule out) a GPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ddavs_rt.engine.base import Engine, EngineSpec
from ddavs_rt.engine.cuda_device import cuda_index
from ddavs_rt.engine.identity import ModelIdentity, check_onnx_identity
from ddavs_rt.engine.machine import physical_cores
from ddavs_rt.engine.sidecar import OnnxSidecar, read_onnx_sidecar
from ddavs_rt.errors import CheckpointError

log = logging.getLogger(__name__)


def ort_providers(device: str | None) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for a device request: None = CUDA (GPU 0) when available, else CPU;
    `cuda:N` runs on GPU N (the CUDA provider's `device_id`; without it, GPU 0)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wants_gpu = device is None or device.startswith("cuda")
    if wants_gpu and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": str(cuda_index(device))}), "CPUExecutionProvider"]
    if device is not None and device.startswith("cuda"):
        log.warning("device %s asked for, but onnxruntime has no CUDA provider (%s); using the CPU", device, available)
    return ["CPUExecutionProvider"]


class OrtEngine(Engine):
    """An exported (fp32, fp16 or int8 Q/DQ) ONNX graph run by ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, device: str | None = None, threads: int | None = None,
                 expected: ModelIdentity | None = None, spinning: bool = False) -> None:
        """`expected`: the identity of the checkpoint this file must have been made from (weights,
        bank and config checksums); the sidecar's own consistency is checked either way."""
        import onnxruntime as ort

        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: ONNX file not found; export one with `ddavs-rt export --checkpoint DIR --out {self.path}`")
        self.sidecar: OnnxSidecar = read_onnx_sidecar(self.path)
        check_onnx_identity(self.sidecar, self.path, expected)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or physical_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.spinning = spinning
        providers = ort_providers(device)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"{self.path}: onnxruntime cannot load it ({first}); re-export it with `ddavs-rt export`") from None
        used = self.session.get_providers()
        names = [tensor.name for tensor in self.session.get_inputs()]
        if names[:2] != ["frames", "audio"] or [t.name for t in self.session.get_outputs()][:1] != ["mask_logits"]:
            raise CheckpointError(f"{self.path}: graph inputs {names} are not (frames, audio) -> mask_logits; re-export it with `ddavs-rt export`")
        cfg = self.sidecar.model_cfg()
        self.spec = EngineSpec.from_config(
            cfg,
            batch_min=self.sidecar.batch_min,
            batch_max=self.sidecar.batch_max,
            model_id=self.sidecar.model_id,
            precision=self.sidecar.precision,
            backend="onnxruntime",
            device=f"cuda:{cuda_index(device)}" if used[0] == "CUDAExecutionProvider" else "cpu",
        )
        log.info("onnxruntime engine %s: providers %s, %d intra-op threads, spinning %s", self.path.name, used,
                 options.intra_op_num_threads, "on" if spinning else "off")

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["mask_logits"], {"frames": frames, "audio": audio})
        return logits

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]

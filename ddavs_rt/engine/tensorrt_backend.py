"""TensorRT backend: a serialized engine with its sidecar, run with the TensorRT 10/11 runtime API.

`tensorrt` is an optional extra imported only here and in the offline `ddavs_rt.calibration.tensorrt_build`, lazily. Device
buffers are torch CUDA tensors (torch is already a dependency), so no pycuda / cuda-python is
needed: `set_tensor_address(name, tensor.data_ptr())`, then `execute_async_v3` on torch's current
stream. Before deserializing, the sidecar is checked against this machine's GPU and TensorRT
version (and the checkpoint, when one is named): a stale engine is refused with the command that
rebuilds it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

import numpy as np

from ddavs_rt.engine.base import Engine, EngineSpec
from ddavs_rt.engine.cuda_device import cuda_index, require_visible, visible_gpu_count
from ddavs_rt.engine.sidecar import check_tensorrt_sidecar, read_tensorrt_sidecar
from ddavs_rt.errors import CheckpointError, DdavsError

log = logging.getLogger(__name__)

TENSORRT_MISSING = "TensorRT is not installed: pip install ddavs-rt[tensorrt] on a machine with an NVIDIA GPU"


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or a one-line DdavsError saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise DdavsError(TENSORRT_MISSING) from None
    return tensorrt


def tensorrt_available(device_index: int = 0) -> bool:
    """TensorRT imports and GPU `device_index` is visible (ConfigError when the index is beyond
    the visible GPUs: the user named a GPU this machine does not have)."""
    try:
        import_tensorrt()
    except DdavsError:
        return False
    count = visible_gpu_count()
    if count == 0:
        return False
    require_visible(device_index, count)
    return True


def gpu_identity(device_index: int = 0) -> tuple[str, str, str | None]:
    """(GPU name, compute capability 'major.minor', CUDA version) of CUDA device `device_index`."""
    import torch

    if not torch.cuda.is_available():
        raise DdavsError("TensorRT needs an NVIDIA GPU and none is visible (torch.cuda.is_available() is False)")
    require_visible(device_index, visible_gpu_count())
    major, minor = torch.cuda.get_device_capability(device_index)
    return torch.cuda.get_device_name(device_index), f"{major}.{minor}", torch.version.cuda


class TensorRTEngine(Engine):
    def __init__(self, engine_path: str | Path, device: str | None = None, checkpoint_sha256: str | None = None) -> None:
        import torch

        trt = import_tensorrt()
        self.path = Path(engine_path)
        self._torch = torch
        device = device or "cuda:0"
        if not device.startswith("cuda"):
            raise DdavsError(f"the tensorrt backend runs on a CUDA device, not {device!r}; use --backend onnxruntime for the CPU")
        index = cuda_index(device)
        self.device = torch.device("cuda", index)
        self.sidecar = read_tensorrt_sidecar(self.path)
        gpu_name, capability, _ = gpu_identity(index)
        check_tensorrt_sidecar(
            self.sidecar, self.path, gpu_name=gpu_name, compute_capability=capability,
            tensorrt_version=trt.__version__, checkpoint_sha256=checkpoint_sha256,
        )
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(index):
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise CheckpointError(f"{self.path}: TensorRT cannot deserialize it; rebuild it with `ddavs-rt build-engine`")
            self.context = self.engine.create_execution_context()
        self._dtypes = {
            self.engine.get_tensor_name(i): _torch_dtype(trt, self.engine.get_tensor_dtype(self.engine.get_tensor_name(i)))
            for i in range(self.engine.num_io_tensors)
        }
        missing = {"frames", "audio", "mask_logits"} - set(self._dtypes)
        if missing:
            raise CheckpointError(f"{self.path}: engine lacks tensors {sorted(missing)}; rebuild it with `ddavs-rt build-engine`")
        cfg = self.sidecar.onnx.model_cfg()
        self.spec = EngineSpec.from_config(
            cfg,
            batch_min=self.sidecar.batch_min,
            batch_max=self.sidecar.batch_max,
            model_id=self.sidecar.onnx.model_id,
            precision=self.sidecar.precision,
            backend="tensorrt",
            device=str(self.device),
        )
        log.info("tensorrt engine %s (TensorRT %s, %s, batch %d-%d)", self.path.name, trt.__version__,
                 self.sidecar.precision, self.sidecar.batch_min, self.sidecar.batch_max)

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        count = len(frames)
        if 0 < count < self.spec.batch_min:  # pad up to the optimization profile's minimum, then drop the pad
            pad = self.spec.batch_min - count
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
            audio = np.concatenate([audio, np.repeat(audio[-1:], pad, axis=0)])
            return super().infer(frames, audio)[:count]
        return super().infer(frames, audio)

    def _run(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        # The scheduler calls this from its own thread, whose current CUDA device is cuda:0 unless
        # set: TensorRT's execution context runs on the thread's current device, so an engine on
        # cuda:N would run against another GPU's context. Make this engine's device current.
        with self._torch.cuda.device(self.device):
            return self._run_on_device(frames, audio)

    def _run_on_device(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        torch = self._torch
        stream = torch.cuda.current_stream(self.device)
        inputs = {
            "frames": torch.from_numpy(frames).to(self.device, self._dtypes["frames"]),  # [B, H, W, 3]
            "audio": torch.from_numpy(audio).to(self.device, self._dtypes["audio"]),  # [B, S]
        }
        for name, tensor in inputs.items():
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out_shape = tuple(self.context.get_tensor_shape("mask_logits"))  # [B, K, H, W]
        logits = torch.empty(out_shape, dtype=self._dtypes["mask_logits"], device=self.device)
        self.context.set_tensor_address("mask_logits", logits.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise DdavsError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        stream.synchronize()
        return logits.float().cpu().numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None


def _torch_dtype(trt: ModuleType, dtype):
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.UINT8: torch.uint8,
             trt.DataType.INT32: torch.int32, trt.DataType.INT8: torch.int8, trt.DataType.BOOL: torch.bool}
    if hasattr(trt.DataType, "INT64"):
        table[trt.DataType.INT64] = torch.int64
    return table[dtype]

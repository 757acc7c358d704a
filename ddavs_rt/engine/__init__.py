"""The deployment library's inference engines: one interface (`Engine.infer`, `Engine.spec`).

    from ddavs_rt.engine import open_engine
    engine = open_engine("model.onnx")                  # backend="auto": see `ddavs_rt.engine.open`
    logits = engine.infer(frames_uint8_BHW3, audio_float32_BS)   # float32 [B, K, H, W]

Backends are imported only when used, so `import ddavs_rt.engine` never imports TensorRT or torch.
The offline tools (`ddavs_rt.calibration`: INT8 quantization, TensorRT engine building, the model
benchmark) use only the names below; nothing here imports calibration, synth or training code
(tests/test_packaging.py enforces both directions).
"""

from ddavs_rt.engine.base import Engine, EngineSpec, resize_frames
from ddavs_rt.engine.machine import describe_machine, machine_slug, physical_cores
from ddavs_rt.engine.identity import ModelIdentity, checkpoint_identity
from ddavs_rt.engine.open import BACKENDS, EngineChoice, choose_engine, open_engine
from ddavs_rt.engine.sidecar import (
    OnnxSidecar, TensorInfo, TensorRTSidecar, read_onnx_sidecar, read_tensorrt_sidecar, sidecar_path, write_sidecar,
)

__all__ = [
    "BACKENDS", "Engine", "EngineChoice", "EngineSpec", "ModelIdentity", "checkpoint_identity", "choose_engine", "OnnxSidecar", "TensorInfo", "TensorRTSidecar", "describe_machine",
    "machine_slug", "open_engine", "physical_cores", "read_onnx_sidecar", "read_tensorrt_sidecar", "resize_frames",
    "sidecar_path", "write_sidecar",
]

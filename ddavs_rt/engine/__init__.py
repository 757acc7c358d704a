"""Inference engines: one interface (`Engine.infer`, `Engine.spec`), three backends.

    from ddavs_rt.engine import open_engine
    engine = open_engine("model.onnx")                  # backend="auto": tensorrt > onnxruntime > torch
    logits = engine.infer(frames_uint8_BHW3, audio_float32_BS)   # float32 [B, K, H, W]

Backends are imported only when used, so `import ddavs_rt.engine` never imports TensorRT.
"""

from ddavs_rt.engine.base import Engine, EngineSpec, resize_frames
from ddavs_rt.engine.open import BACKENDS, open_engine

__all__ = ["BACKENDS", "Engine", "EngineSpec", "open_engine", "resize_frames"]

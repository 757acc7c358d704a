"""Engine sidecars written before a behaviour-changing model field read as the old behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ddavs_rt.config import ModelConfig, dump_config
from ddavs_rt.engine.sidecar import OnnxSidecar, TensorInfo, TensorRTSidecar, read_onnx_sidecar, read_tensorrt_sidecar, write_sidecar
from ddavs_rt.model.ddavs import build_model

torch.set_num_threads(1)

TINY = {
    "name": "sidecar-tiny", "input_size": 64,
    "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1]},
    "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
    "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "mlp_ratio": 2.0},
    "bank": {"num_prototypes": 4},
    "com": {"projector_dim": 16},
    "avam": {"positions": [3, 4], "heads": 4},
    "decoder": {"hidden_dim": 16, "num_classes": 1},
}


def _onnx_sidecar(config: dict) -> OnnxSidecar:
    return OnnxSidecar(
        model_id="sidecar-tiny@abc", config=config, checkpoint_sha256="c" * 64, opset=18,
        inputs=[TensorInfo(name="frames", dtype="uint8", shape=["batch", 64, 64, 3])],
        outputs=[TensorInfo(name="mask_logits", dtype="float32", shape=["batch", 1, 64, 64])],
        batch_min=1, batch_max=4, exporter="torch 2.11.0 (dynamo)",
    )


def _mit_layernorm_eps(cfg: ModelConfig) -> set[float]:
    model = build_model(cfg)
    return {m.eps for name, m in model.named_modules() if isinstance(m, nn.LayerNorm) and "visual" in name}


def test_a_sidecar_without_layernorm_eps_reads_as_legacy(tmp_path: Path) -> None:
    today = dump_config(ModelConfig.model_validate(TINY))
    assert today["visual"]["layernorm_eps"] == "mmseg"  # what an export writes now
    old = json.loads(json.dumps(today))
    del old["visual"]["layernorm_eps"]  # what an export wrote before the field existed
    onnx = tmp_path / "old.onnx"
    onnx.write_bytes(b"graph")
    write_sidecar(onnx, _onnx_sidecar(old))
    assert "layernorm_eps" not in json.loads((tmp_path / "old.onnx.json").read_text())["config"]["visual"]
    cfg = read_onnx_sidecar(onnx).model_cfg()
    assert cfg.visual.layernorm_eps == "legacy"
    assert _mit_layernorm_eps(cfg) == {1e-6}  # the eps the old engine's model was built with, everywhere

    engine = tmp_path / "old.engine"
    engine.write_bytes(b"plan")
    write_sidecar(engine, TensorRTSidecar(
        onnx=_onnx_sidecar(old), onnx_path=str(onnx), onnx_sha256="o" * 64, checkpoint_sha256="c" * 64,
        precision="fp16", tensorrt_version="10.15.1", gpu_name="NVIDIA H100", compute_capability="9.0",
        batch_min=1, batch_opt=4, batch_max=4,
    ))
    assert read_tensorrt_sidecar(engine).onnx.model_cfg().visual.layernorm_eps == "legacy"


def test_a_sidecar_that_records_the_field_keeps_it(tmp_path: Path) -> None:
    onnx = tmp_path / "new.onnx"
    onnx.write_bytes(b"graph")
    write_sidecar(onnx, _onnx_sidecar(dump_config(ModelConfig.model_validate(TINY))))
    cfg = read_onnx_sidecar(onnx).model_cfg()
    assert cfg.visual.layernorm_eps == "mmseg"
    assert _mit_layernorm_eps(cfg) == {1e-5, 1e-6}  # mmseg: 1e-5 in patch embeddings and spatial reduction

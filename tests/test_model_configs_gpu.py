"""Every model config under configs/model/ exports (random weights) to a graph that follows the
documented rules of TensorRT's ONNX parser (ddavs_rt.engine.trt_ops): the export itself refuses a
graph that breaks them, and the written file is checked again here, uint8 rule included.

The B5 configs are large (an export takes minutes on 2 cores): marked slow."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.engine.trt_ops import tensorrt_problems

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "model").rglob("*.yaml"))


def _param(path: Path):
    marks = [pytest.mark.slow] if "b5" in path.stem else []
    return pytest.param(path, id=str(path.relative_to(ROOT / "configs" / "model")), marks=marks)


def test_every_config_is_listed():
    assert len(CONFIGS) >= 16 and any("htsat" in p.stem for p in CONFIGS)


@pytest.mark.parametrize("config", [_param(p) for p in CONFIGS])
def test_exported_graph_follows_tensorrts_parser_rules(config, tmp_path):
    torch.set_num_threads(1)
    checkpoint = write_random_checkpoint(config, tmp_path / "ckpt", seed=0)
    out = export_checkpoint(checkpoint, tmp_path / "m.onnx", batch=(1, 2))  # refuses a graph that breaks the rules
    model = onnx.load(str(out))
    assert tensorrt_problems(model) == []
    graph = onnx.shape_inference.infer_shapes(model).graph
    outputs = {v.name for v in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    made = [name for node in graph.node for name in node.output if name and name not in outputs]
    assert len(made) > 50 and sum(name in types for name in made) > 0.9 * len(made)  # the types were seen
    assert [n.op_type for n in graph.node if "frames" in n.input] == ["Cast"]
    assert not [name for name in made if types.get(name) == onnx.TensorProto.UINT8]

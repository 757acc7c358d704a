"""ONNX export of ddavs-tiny (random weights): parity with PyTorch, TensorRT operator coverage, sidecar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from ddavs_rt.atomic import sha256_file
from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.engine.export import export_checkpoint, parse_batch_range
from ddavs_rt.engine.ort_backend import OrtEngine
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.engine.sidecar import read_onnx_sidecar
from ddavs_rt.engine.trt_ops import graph_ops, load_tensorrt_ops, tensorrt_problems
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "model" / "ddavs-tiny.yaml"
S = load_config(TINY, ModelConfig).input_size  # the graph's frame size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export")
    checkpoint = write_random_checkpoint(TINY, folder / "ckpt", seed=3)
    onnx_path = export_checkpoint(checkpoint, folder / "out" / "tiny.onnx", batch=(1, 4), opset=18)
    return checkpoint, onnx_path


def _inputs(batch: int, size: int, samples: int, seed: int):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    audio = (rng.random((batch, samples), dtype=np.float32) * 2 - 1) * 0.5
    return frames, audio


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch(exported, batch):
    checkpoint, onnx_path = exported
    model, cfg = load_checkpoint(checkpoint)
    engine = OrtEngine(onnx_path, device="cpu", threads=1)
    frames, audio = _inputs(batch, cfg.input_size, cfg.window_samples, seed=batch)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(frames), torch.from_numpy(audio)).numpy()
    got = engine.infer(frames, audio)
    assert got.shape == (batch, cfg.decoder.num_classes, cfg.input_size, cfg.input_size)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-3
    assert expected.std() > 0  # the comparison is not between two constants


def test_graph_has_dynamic_batch_and_the_contract_io(exported):
    _, onnx_path = exported
    graph = onnx.load(str(onnx_path)).graph
    names = [i.name for i in graph.input]
    assert names == ["frames", "audio"]
    assert [o.name for o in graph.output] == ["mask_logits"]
    frames_dims = graph.input[0].type.tensor_type.shape.dim
    assert frames_dims[0].dim_param and not frames_dims[0].dim_value
    assert [d.dim_value for d in frames_dims[1:]] == [S, S, 3]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_every_operator_is_in_tensorrts_parser_list(exported):
    _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    ops = graph_ops(model)
    assert ("", "Conv") in ops and ("", "MatMul") in ops  # the walk saw the real graph
    assert tensorrt_problems(model) == []
    assert load_tensorrt_ops().oldest_edition.startswith("10.")


def test_operator_walk_enters_local_functions_and_subgraphs():
    body = [helper.make_node("Unique", ["x"], ["y"])]
    function = helper.make_function("local", "Odd", ["x"], ["y"], body, [helper.make_opsetid("", 18)])
    branch = helper.make_graph([helper.make_node("NonZero", ["c"], ["z"])], "then", [], [
        helper.make_tensor_value_info("z", onnx.TensorProto.INT64, None)])
    nodes = [
        helper.make_node("Odd", ["x"], ["y"], domain="local"),
        helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch),
        helper.make_node("DFT", ["x"], ["w"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    ops = graph_ops(model)
    assert ("", "Unique") in ops and ("", "NonZero") in ops
    assert ("local", "Odd") not in ops  # a function call is not an operator, its body is
    problems = tensorrt_problems(model)
    assert any("Unique" in p for p in problems) and any("DFT" in p for p in problems)
    assert not any("NonZero" in p for p in problems)  # supported since TensorRT 10


def test_sidecar_records_what_the_graph_was_made_from(exported):
    checkpoint, onnx_path = exported
    sidecar = read_onnx_sidecar(onnx_path)
    cfg = load_config(TINY, ModelConfig)
    assert sidecar.checkpoint_sha256 == sha256_file(checkpoint / "model.safetensors")
    assert sidecar.bank_sha256 is None  # this checkpoint has no bank file
    assert sidecar.model_cfg() == cfg
    assert sidecar.opset == 18 and sidecar.precision == "fp32"
    assert (sidecar.batch_min, sidecar.batch_max) == (1, 4)
    assert [(t.name, t.dtype, t.shape) for t in sidecar.inputs] == [
        ("frames", "uint8", ["batch", S, S, 3]), ("audio", "float32", ["batch", 16000])]
    assert [(t.name, t.dtype, t.shape) for t in sidecar.outputs] == [("mask_logits", "float32", ["batch", 1, S, S])]
    assert torch.__version__ in sidecar.exporter
    assert sidecar.model_id.startswith("ddavs-tiny@")
    leftovers = [p.name for p in onnx_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_batch_range_parsing():
    assert parse_batch_range("1-32") == (1, 32)
    assert parse_batch_range("8") == (8, 8)
    for bad in ("0-4", "5-2", "a-b", "1,2"):
        with pytest.raises(ConfigError):
            parse_batch_range(bad)


def test_cli_rejects_a_bad_batch_range_in_one_line(tmp_path, capsys):
    code = cli_main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "m.onnx"), "--batch", "9-2"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("ddavs-rt: error: --batch '9-2'") and "\n" not in err


def test_no_uint8_tensor_inside_the_exported_graph(exported):
    """TensorRT's parser takes uint8 only as a graph input or output: the frames are cast to float
    before they are permuted, so no intermediate tensor is uint8."""
    _, onnx_path = exported
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    io = {v.name for v in graph.input} | {v.name for v in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    produced = [out for node in graph.node for out in node.output if out and out not in io]
    assert produced  # the walk saw the real graph
    uint8_inside = [name for name in produced if types.get(name) == onnx.TensorProto.UINT8]
    assert uint8_inside == []
    consumers = [n.op_type for n in graph.node if "frames" in n.input]
    assert consumers == ["Cast"]  # cast first, then permute; shape reads come off the cast

"""SDAVS-tiny (random weights) exports with the dynamo exporter at a dynamic batch and ONNX Runtime
matches torch; `ddavs-rt model-info` reports SNRP and DAMF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.model.checkpoint import load_checkpoint
from ddavs_rt.model.ddavs import build_model
from support.onnx_parity import torch_and_onnxruntime_logits

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/model/sdavs-tiny.yaml"
SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sdavs")
    cfg = load_config(CONFIG, ModelConfig).model_copy(update={"input_size": SIZE})
    checkpoint = write_random_checkpoint(cfg, folder / "ckpt", seed=21)
    return checkpoint, export_checkpoint(checkpoint, folder / "sdavs.onnx", batch=(1, 4))


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch(exported, batch):
    checkpoint, onnx_path = exported
    model, cfg = load_checkpoint(checkpoint)
    expected, got = torch_and_onnxruntime_logits(model, onnx_path, batch, SIZE, cfg.window_samples)
    assert got.shape == (batch, 1, SIZE, SIZE)
    assert np.abs(got - expected).max() <= 1e-3
    assert expected.std() > 0


def test_graph_batch_is_dynamic_and_keeps_the_3d_convolutions(exported):
    _, onnx_path = exported
    graph = onnx.load(str(onnx_path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    conv3d = [n for n in graph.node if n.op_type == "Conv" and any(
        a.name == "kernel_shape" and len(a.ints) == 3 for a in n.attribute)]
    assert len(conv3d) >= 4 * 2 * 3  # STC q/k/v of both attention directions in four stages


def test_model_info_reports_the_variant_modules(capsys):
    assert cli_main(["model-info", "--config", str(CONFIG), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {m["name"]: m for m in info["modules"]}
    assert list(rows) == ["visual encoder", "audio encoder", "SNRP", "DAMF", "decoder (rest)"]
    model = build_model(load_config(CONFIG, ModelConfig))
    assert sum(m["params"] for m in info["modules"]) == info["total_params"] == sum(p.numel() for p in model.parameters())
    assert rows["SNRP"]["params"] == sum(p.numel() for s in model.decoder.stages for p in s.snrp.parameters())
    assert all(m["flops"] > 0 for m in info["modules"])

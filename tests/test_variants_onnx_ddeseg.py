"""DDESeg-tiny (random weights, a filled memory from a bank file) exports with the dynamo exporter
at a dynamic batch and ONNX Runtime matches torch; `ddavs-rt model-info` reports its modules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ddavs_rt.bank import PrototypeBank, module_sha256
from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.model.checkpoint import load_checkpoint, save_checkpoint
from ddavs_rt.model.ddavs import build_model
from support.onnx_parity import torch_and_onnxruntime_logits

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/model/ddeseg-tiny.yaml"
SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("ddeseg")
    cfg = load_config(CONFIG, ModelConfig).model_copy(update={"input_size": SIZE})
    torch.manual_seed(11)
    model = build_model(cfg).eval()
    per_class = cfg.ddeseg.prototypes_per_class
    classes = cfg.bank.num_prototypes // per_class
    g = torch.Generator().manual_seed(12)
    dim = model.audio_encoder.out_dim
    prototypes = (torch.randn(classes, 1, dim, generator=g) + 0.2 * torch.randn(classes, per_class, dim, generator=g)).reshape(-1, dim)
    bank = PrototypeBank(prototypes, torch.arange(classes).repeat_interleave(per_class), [f"c{i}" for i in range(classes)],
                         cfg.audio.kind, module_sha256(model.audio_encoder), per_class, 1)
    checkpoint = save_checkpoint(folder / "ckpt", model, cfg, bank=bank)
    return checkpoint, export_checkpoint(checkpoint, folder / "ddeseg.onnx", batch=(1, 4))


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_torch(exported, batch):
    checkpoint, onnx_path = exported
    model, cfg = load_checkpoint(checkpoint)
    assert model.bank_buffer.abs().sum() > 0  # the memory came with the checkpoint and is in the graph
    expected, got = torch_and_onnxruntime_logits(model, onnx_path, batch, SIZE, cfg.window_samples)
    assert got.shape == (batch, 1, SIZE, SIZE)
    assert np.abs(got - expected).max() <= 1e-3
    assert expected.std() > 0


def test_graph_batch_is_dynamic_and_has_no_random_op(exported):
    _, onnx_path = exported
    graph = onnx.load(str(onnx_path)).graph
    batch_dim = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    ops = {node.op_type for node in graph.node}
    assert not ops & {"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike"}  # eval: no Gumbel noise
    assert "TopK" in ops  # the K nearest class centres are chosen in the graph


def test_model_info_reports_the_variant_modules(capsys):
    assert cli_main(["model-info", "--config", str(CONFIG), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    rows = {m["name"]: m for m in info["modules"]}
    assert list(rows) == ["visual encoder", "audio encoder", "DDM (derivation)", "DEM (elimination)", "fusion blocks", "decoder"]
    model = build_model(load_config(CONFIG, ModelConfig))
    assert sum(m["params"] for m in info["modules"]) == info["total_params"] == sum(p.numel() for p in model.parameters())
    assert rows["DDM (derivation)"]["params"] == sum(p.numel() for p in model.ddm.parameters())
    assert all(m["flops"] > 0 for m in info["modules"])

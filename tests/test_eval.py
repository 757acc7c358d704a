"""ddavs-rt eval: table per tag present, JSON written, --shuffle-audio feeds other clips' audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig
from ddavs_rt.model.checkpoint import save_checkpoint
from ddavs_rt.model.ddavs import build_model
from ddavs_rt.train.datasets import open_dataset
from ddavs_rt.train.evaluate import ClipSelection, derangement, evaluate_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "3", "--seed", "31", "--size", "32", "--split", "test"]) == 0
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "2", "--seed", "32", "--size", "32", "--split", "test", "--subsets", "single"]) == 0
    cfg = ModelConfig.model_validate({
        "name": "eval-tiny", "input_size": 32,
        "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1]},
        "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
        "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "bank_refinement": False},
        "com": {"enabled": False}, "avam": {"heads": 4}, "decoder": {"hidden_dim": 16},
    })
    torch.manual_seed(0)
    save_checkpoint(root / "ckpt", build_model(cfg).eval(), cfg)
    return root


def test_table_covers_the_tags_and_json_is_written(setup: Path, capsys: pytest.CaptureFixture) -> None:
    out = setup / "eval.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(setup / "data"),
                     "--batch-size", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    tags = sorted({t for plan in dataset.plans for t in plan.tags})
    assert "single" in tags
    report = json.loads(out.read_text())
    assert sorted(report["per_tag"]) == tags
    assert report["batch_size"] == 10 and report["num_frames"] == 5 * len(dataset)  # 2 clips x 5 frames
    assert "metric batch 10 frames" in table
    for tag in tags:
        line = next(row for row in table.splitlines() if row.split() and row.split()[0] == tag)
        assert f"{report['per_tag'][tag]['jf']:.4f}" in line
    assert 0.0 <= report["jf"] <= 1.0 and report["shuffle_audio"] is False


def test_tags_option_narrows_the_clips(setup: Path) -> None:
    out = setup / "single.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(setup / "data"),
                     "--tags", "single", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    assert report["num_clips"] == sum("single" in plan.tags for plan in dataset.plans)
    assert report["per_tag"]["single"]["num_frames"] == report["num_frames"]


def test_shuffle_audio_feeds_another_clips_audio(setup: Path) -> None:
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    n = len(dataset)
    partner = derangement(n, seed=5)
    assert partner == derangement(n, seed=5) and all(partner[i] != i for i in range(n))
    assert sorted(partner) == list(range(n))
    model = build_model(ModelConfig.model_validate(json.loads((setup / "ckpt/config.json").read_text())))
    fed: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, inputs: fed.append(inputs[1].clone()))
    evaluate_model(model, ClipSelection(dataset, list(range(n)), partner), batch_size=1)
    for i in range(n):
        assert torch.equal(fed[i], torch.from_numpy(dataset[partner[i]].audio))
        assert not torch.equal(fed[i], torch.from_numpy(dataset[i].audio))

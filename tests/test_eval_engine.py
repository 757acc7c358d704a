"""`ddavs-rt eval` judges an exported graph the same way as its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddavs_rt.cli import main
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.synth.writer import write_dataset

REPO = Path(__file__).resolve().parents[1]


def test_onnx_export_scores_like_its_checkpoint(tmp_path: Path) -> None:
    checkpoint = write_random_checkpoint(REPO / "configs" / "model" / "ddavs-tiny.yaml", tmp_path / "ckpt", seed=3)
    onnx_path = export_checkpoint(checkpoint, tmp_path / "tiny.onnx", batch=(1, 8))
    data = tmp_path / "synth"
    write_dataset(data, clips=3, seed=77, split="test")
    results = {}
    for name, target in (("torch", checkpoint), ("onnx", onnx_path)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--checkpoint", str(target), "--data", str(data), "--split", "test",
                     "--batch-size", "1", "--json", str(out), "-q"]) == 0
        results[name] = json.loads(out.read_text())
    assert results["onnx"]["num_frames"] == results["torch"]["num_frames"] == 15
    assert results["onnx"]["jf"] == pytest.approx(results["torch"]["jf"], abs=1e-3)

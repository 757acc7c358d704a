"""The shipped model (models/ddavs-tiny-synth) segments what sounds, and needs the sound to do it.

A small SynthAVS set drawn with a seed no training run used, evaluated through the real
`ddavs-rt eval` with the clips' own audio and with every clip given another clip's audio. The
bounds sit below what the full 300-clip test set measures (docs/results/shipped-model.md), so a
model that stopped listening, or a broken checkpoint, fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddavs_rt.cli import main as cli_main
from ddavs_rt.model.checkpoint import load_checkpoint

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "ddavs-tiny-synth"
SEED = 777001  # never used by a training, validation or study set


@pytest.fixture(scope="module")
def scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("shipped")
    data = root / "data"
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "24", "--seed", str(SEED), "--split", "test", "--subsets", "single"]) == 0
    out = {}
    for name, extra in (("own", []), ("shuffled", ["--shuffle-audio"])):
        path = root / f"{name}.json"
        assert cli_main(["eval", "-q", "--checkpoint", str(SHIPPED), "--data", str(data), "--split", "test", "--json", str(path), *extra]) == 0
        out[name] = json.loads(path.read_text())
    return out


def test_the_shipped_checkpoint_loads_with_its_bank() -> None:
    model, cfg = load_checkpoint(SHIPPED)
    assert cfg.name == "ddavs-tiny" and model.bank_buffer is not None
    assert model.bank_buffer.shape[0] == cfg.bank.num_prototypes


def test_the_shipped_model_segments_single_sources(scores: dict[str, dict]) -> None:
    assert scores["own"]["num_clips"] == 24
    assert scores["own"]["jf"] >= 0.75, scores["own"]


def test_the_shipped_model_needs_the_sound(scores: dict[str, dict]) -> None:
    assert scores["own"]["jf"] - scores["shuffled"]["jf"] >= 0.15, (scores["own"]["jf"], scores["shuffled"]["jf"])

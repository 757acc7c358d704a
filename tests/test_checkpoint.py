"""Checkpoint folders: round trip with equal outputs, and one-line errors for broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ddavs_rt.bank import load_bank, module_sha256, save_bank
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.checkpoint import load_checkpoint, save_checkpoint
from ddavs_rt.model.ddavs import build_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = load_config(REPO / "configs/model/ddavs-tiny.yaml", ModelConfig).model_copy(update={"input_size": 64})
    model = build_model(cfg).eval()
    with torch.no_grad():  # non-default BatchNorm statistics must survive the trip too
        model.decoder.fuse_norm.running_mean.uniform_(-1, 1)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    bank_file = folder.parent / "bank-src.safetensors"
    save_bank(bank_file, torch.randn(96, 128), torch.arange(96) % 16, [f"c{i}" for i in range(16)],
              "small", module_sha256(model.audio_encoder), 3, 2)
    bank = load_bank(bank_file)
    save_checkpoint(folder, model, cfg, bank)
    return folder, model, cfg, bank


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 40, 56, 3), dtype=torch.uint8, generator=g), torch.randn(2, 16000, generator=g) * 0.1


def test_round_trip_gives_equal_outputs(saved) -> None:
    folder, model, cfg, bank = saved
    from ddavs_rt.bank import attach_bank

    attach_bank(model, bank)
    loaded, loaded_cfg = load_checkpoint(folder)
    assert loaded_cfg == cfg and not loaded.training
    assert torch.equal(loaded.bank_buffer, bank.prototypes)
    frames, audio = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames, audio), model(frames, audio), rtol=0, atol=0)
    assert sorted(p.name for p in folder.iterdir()) == ["bank.safetensors", "config.json", "model.safetensors"]


def _copy(saved, tmp_path: Path) -> Path:
    folder = tmp_path / "ck"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((saved[0] / name).read_bytes())
    return folder


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_folder_and_files(saved, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="folder not found") as e:
        load_checkpoint(tmp_path / "nope")
    _one_line(e)
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(folder)


def test_corrupt_weights(saved, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable") as e:
        load_checkpoint(folder)
    _one_line(e)


def test_missing_and_unexpected_keys_are_named(saved, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state.pop("decoder.classifier.weight")
    state["extra.thing"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder)
    message = _one_line(e)
    assert "decoder.classifier.weight" in message and "extra.thing" in message


def test_shape_mismatch_names_the_key_and_both_shapes(saved, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    state["decoder.classifier.weight"] = torch.zeros(3, 64, 1, 1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(folder)
    message = _one_line(e)
    assert "decoder.classifier.weight" in message and "(3, 64, 1, 1)" in message and "(1, 64, 1, 1)" in message


def test_config_that_fails_validation(saved, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    data = json.loads((folder / "config.json").read_text())
    data["decoder"]["hidden_dim"] = -4
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="decoder.hidden_dim") as e:
        load_checkpoint(folder)
    _one_line(e)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(folder)


def test_a_bank_from_another_encoder_is_refused_on_load(saved, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    save_bank(folder / "bank.safetensors", torch.randn(96, 128), torch.arange(96) % 16, [f"c{i}" for i in range(16)],
              "small", "f" * 64, 3, 2)
    with pytest.raises(CheckpointError, match="audio encoder weights"):
        load_checkpoint(folder)

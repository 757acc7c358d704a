"""The prototype bank file: round trip, metadata, and refusal of banks from other encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from ddavs_rt.bank import BANK_FORMAT, attach_bank, load_bank, module_sha256, save_bank
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.errors import BankError
from ddavs_rt.model.ddavs import build_model

REPO = Path(__file__).resolve().parents[1]
CLASSES = [f"class{i}" for i in range(16)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs/model/ddavs-tiny.yaml", ModelConfig).model_copy(update={"input_size": 64})
    return build_model(cfg).eval()


def _save(path: Path, model, *, p: int = 96, d: int = 128, kind: str = "small", sha: str | None = None) -> torch.Tensor:
    prototypes = torch.randn(p, d)
    save_bank(path, prototypes, torch.arange(p) % 16, CLASSES, kind, sha or module_sha256(model.audio_encoder), 3, 2)
    return prototypes


def test_round_trip_and_metadata(tmp_path: Path, model) -> None:
    prototypes = _save(tmp_path / "bank.safetensors", model)
    bank = load_bank(tmp_path / "bank.safetensors")
    assert torch.equal(bank.prototypes, prototypes) and bank.class_index.dtype == torch.int64
    assert (bank.size, bank.dim, bank.k, bank.m, bank.class_names) == (96, 128, 3, 2, CLASSES)
    with safe_open(str(tmp_path / "bank.safetensors"), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == BANK_FORMAT and meta["encoder_kind"] == "small" and meta["dim"] == "128"
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic writer left nothing behind


def test_attach_copies_the_bank_into_the_model(tmp_path: Path, model) -> None:
    prototypes = _save(tmp_path / "bank.safetensors", model)
    attach_bank(model, load_bank(tmp_path / "bank.safetensors"))
    assert torch.equal(model.bank_buffer, prototypes)


def test_module_sha256_follows_the_weights(model) -> None:
    before = module_sha256(model.audio_encoder)
    assert before == module_sha256(model.audio_encoder)
    clone = build_model(model.cfg).audio_encoder
    clone.load_state_dict(model.audio_encoder.state_dict())
    assert module_sha256(clone) == before
    with torch.no_grad():
        next(clone.parameters()).add_(1e-3)
    assert module_sha256(clone) != before


@pytest.mark.parametrize(
    "change, words",
    [
        ({"d": 64}, "width 64"),
        ({"kind": "htsat"}, "'htsat' audio encoder"),
        ({"sha": "0" * 64}, "audio encoder weights"),
        ({"p": 90}, "90 prototypes"),
    ],
)
def test_mismatched_banks_are_refused(tmp_path: Path, model, change: dict, words: str) -> None:
    _save(tmp_path / "bank.safetensors", model, **change)
    before = model.bank_buffer.clone()
    with pytest.raises(BankError) as error:
        attach_bank(model, load_bank(tmp_path / "bank.safetensors"))
    message = str(error.value)
    assert words in message and "\n" not in message and ("rebuild" in message or "set bank" in message)
    assert torch.equal(model.bank_buffer, before)


def test_a_model_without_refinement_refuses_a_bank(tmp_path: Path, model) -> None:
    cfg = model.cfg.model_copy(update={"aqm": model.cfg.aqm.model_copy(update={"bank_refinement": False})})
    plain = build_model(cfg)
    _save(tmp_path / "bank.safetensors", plain)
    with pytest.raises(BankError, match="no bank refinement"):
        attach_bank(plain, load_bank(tmp_path / "bank.safetensors"))


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(BankError, match="not found"):
        load_bank(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(BankError, match="not a readable safetensors bank") as error:
        load_bank(tmp_path / "junk.safetensors")
    assert "\n" not in str(error.value)
    with pytest.raises(BankError, match="class_index"):
        save_bank(tmp_path / "b.safetensors", torch.randn(4, 8), torch.arange(3), ["a"], "small", "x", 1, 1)

"""One identity for a model: model_id covers weights, bank and config; caches and sidecar checks follow it.

Real files throughout: the shipped checkpoint copied to a temporary folder, real exports, real ONNX
Runtime sessions, the real bank file format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ddavs_rt.bank import load_bank, save_bank
from ddavs_rt.engine import open_engine, read_onnx_sidecar, sidecar_path
from ddavs_rt.engine.identity import checkpoint_identity
from ddavs_rt.engine.open import cached_export_path, choose_engine
from ddavs_rt.engine.ort_backend import OrtEngine
from ddavs_rt.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "ddavs-tiny-synth"


def _copy_checkpoint(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "bank.safetensors"):
        shutil.copy(SHIPPED / name, dest / name)
    return dest


def _replace_bank(folder: Path, seed: int = 1) -> None:
    """Write a different but valid bank: the same prototypes, shuffled within their classes and nudged."""
    bank = load_bank(folder / "bank.safetensors")
    generator = torch.Generator().manual_seed(seed)
    prototypes = bank.prototypes + 0.5 * bank.prototypes.std() * torch.randn(bank.prototypes.shape, generator=generator)
    save_bank(folder / "bank.safetensors", prototypes, bank.class_index, list(bank.class_names), bank.encoder_kind,
              bank.encoder_sha256, bank.k, bank.m)


def _inputs(size: int, batch: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    audio = (rng.random((batch, 16000), dtype=np.float32) * 2 - 1) * 0.5
    return frames, audio


def test_model_id_changes_with_weights_bank_and_config_content_but_not_its_formatting(tmp_path):
    folder = _copy_checkpoint(tmp_path / "a")
    first = checkpoint_identity(folder)
    assert first.weights_sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert first.bank_sha256 == hashlib.sha256((folder / "bank.safetensors").read_bytes()).hexdigest()
    # the same config, re-serialised with other key order and indentation: the same model
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(reversed(list(data.items()))), indent=7))
    assert checkpoint_identity(folder).model_id == first.model_id
    # a changed config value: another model
    data["decoder"]["dropout"] = 0.2
    (folder / "config.json").write_text(json.dumps(data))
    assert checkpoint_identity(folder).model_id != first.model_id
    # a changed bank (config and weights restored): another model
    shutil.copy(SHIPPED / "config.json", folder / "config.json")
    _replace_bank(folder)
    changed = checkpoint_identity(folder)
    assert changed.weights_sha256 == first.weights_sha256 and changed.bank_sha256 != first.bank_sha256
    assert changed.model_id != first.model_id and changed.model_id.startswith("ddavs-tiny@")
    # no bank at all: another model again
    (folder / "bank.safetensors").unlink()
    assert checkpoint_identity(folder).model_id not in (first.model_id, changed.model_id)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two real exports; minutes each on a loaded 2-core machine
def test_a_changed_bank_gives_a_new_model_id_and_a_fresh_export(tmp_path, caplog):
    torch.set_num_threads(1)
    cache = tmp_path / "cache"
    folder = _copy_checkpoint(tmp_path / "ckpt")
    # auto (fp32, so logits compare at 2e-3 on any CPU; bf16 where it has AMX): exports into the cache
    old = open_engine(folder, "auto:fp32", device="cpu", cache=cache, threads=1)
    assert old.spec.backend == "onnxruntime" and old.path.parent == cache
    assert old.path == cached_export_path(checkpoint_identity(folder), cache)
    old_id, old_path = old.spec.model_id, old.path
    assert old_id == checkpoint_identity(folder).model_id == read_onnx_sidecar(old_path).model_id
    size = old.spec.input_size[0]
    frames, audio = _inputs(size)
    old_logits = old.infer(frames, audio)

    # keep a copy of the old export beside the checkpoint: a file the user might have left there
    shutil.copy(old_path, folder / "model.onnx")
    shutil.copy(sidecar_path(old_path), sidecar_path(folder / "model.onnx"))
    _replace_bank(folder)

    caplog.set_level(logging.INFO)
    new = open_engine(folder, "auto:fp32", device="cpu", cache=cache, threads=1)
    assert new.spec.model_id != old_id and new.spec.model_id == checkpoint_identity(folder).model_id
    assert new.path != old_path and new.path.parent == cache and new.path != folder / "model.onnx"
    sidecar = read_onnx_sidecar(new.path)
    assert sidecar.bank_sha256 == hashlib.sha256((folder / "bank.safetensors").read_bytes()).hexdigest()
    assert "model.onnx" in caplog.text and "bank" in caplog.text  # the stale file beside it was named and passed over
    new_logits = new.infer(frames, audio)
    reference = open_engine(folder, backend="torch", device="cpu", threads=1).infer(frames, audio)
    assert new.spec.model_id == open_engine(folder, backend="torch", device="cpu", threads=1).spec.model_id
    np.testing.assert_allclose(new_logits, reference, atol=2e-3, rtol=1e-3)
    assert np.abs(old_logits - reference).max() > 10 * np.abs(new_logits - reference).max()  # the old graph was stale

    # asked by name for onnxruntime on the changed checkpoint with the stale file beside it and no cache: one line
    with pytest.raises(CheckpointError, match=r"no ONNX export of this model_id .*bank") as error:
        choose_engine(folder, "onnxruntime", "cpu", cache=tmp_path / "empty-cache")
    assert "\n" not in str(error.value)
    # the stale graph opened against the changed checkpoint's identity: refused in one line naming the bank
    with pytest.raises(CheckpointError, match="bank") as error:
        OrtEngine(folder / "model.onnx", expected=checkpoint_identity(folder), threads=1)
    assert "\n" not in str(error.value) and "re-export" in str(error.value)


def test_a_sidecar_whose_checksums_were_edited_is_refused(tmp_path, checkpoint):
    from ddavs_rt.engine.export import export_checkpoint

    onnx_path = export_checkpoint(checkpoint, tmp_path / "m.onnx", batch=(1, 1))
    OrtEngine(onnx_path, threads=1)  # consistent: opens
    original = json.loads(sidecar_path(onnx_path).read_text())
    for field, value in (("bank_sha256", "b" * 64), ("config_sha256", "c" * 64), ("config_sha256", None)):
        data = dict(original, **{field: value})
        sidecar_path(onnx_path).write_text(json.dumps(data))
        with pytest.raises(CheckpointError, match="refused") as error:
            OrtEngine(onnx_path, threads=1)
        assert "\n" not in str(error.value)
    data = json.loads(json.dumps(original))
    data["config"]["input_size"] = 999  # the config no longer hashes to its checksum
    sidecar_path(onnx_path).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="config checksum"):
        OrtEngine(onnx_path, threads=1)

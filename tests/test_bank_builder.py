"""build-bank: shape and metadata, prototypes are real clip embeddings, a foreign encoder is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.bank import attach_bank, load_bank, module_sha256
from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig
from ddavs_rt.errors import BankError
from ddavs_rt.model.checkpoint import load_checkpoint, save_checkpoint
from ddavs_rt.model.ddavs import build_model
from ddavs_rt.train.bank_builder import embed_single_source
from ddavs_rt.train.datasets import open_dataset
from ddavs_rt.train.kmeans import kmeans

torch.set_num_threads(1)

K, M = 2, 2


def _model_cfg(num_prototypes: int) -> ModelConfig:
    return ModelConfig.model_validate({
        "name": "bank-tiny", "input_size": 64,
        "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1]},
        "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
        "aqm": {"num_queries": 2, "layers": 1, "heads": 4}, "bank": {"num_prototypes": num_prototypes},
        "com": {"projector_dim": 16}, "avam": {"heads": 4}, "decoder": {"hidden_dim": 16},
    })


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("bank")
    data = root / "data"
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "5", "--seed", "21", "--size", "32", "--subsets", "single"]) == 0
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "2", "--seed", "22", "--size", "32", "--subsets", "multi"]) == 0
    dataset = open_dataset(data, "synthavs", "train", size=32)
    from ddavs_rt.train.labels import single_source_indices

    num_classes = len({c for _, c in single_source_indices(dataset)})
    torch.manual_seed(0)
    cfg = _model_cfg(num_classes * K * M)
    save_checkpoint(root / "ckpt", build_model(cfg).eval(), cfg)
    return root, num_classes


def test_bank_shape_metadata_and_real_embeddings(setup: tuple[Path, int]) -> None:
    root, num_classes = setup
    out = root / "bank.safetensors"
    assert cli_main(["build-bank", "-q", "--checkpoint", str(root / "ckpt"), "--data", str(root / "data"),
                     "--k", str(K), "--m", str(M), "--out", str(out)]) == 0
    bank = load_bank(out)
    model, cfg = load_checkpoint(root / "ckpt")
    assert bank.prototypes.shape == (num_classes * K * M, 32)
    assert (bank.k, bank.m, bank.encoder_kind) == (K, M, "small")
    assert bank.encoder_sha256 == module_sha256(model.audio_encoder)
    assert len(bank.class_names) == num_classes and "background" not in bank.class_names
    assert torch.equal(bank.class_index, torch.arange(num_classes).repeat_interleave(K * M))
    embeddings = embed_single_source(model.audio_encoder, open_dataset(root / "data", "synthavs", "train", size=32))
    for proto, cls in zip(bank.prototypes, bank.class_index.tolist()):
        class_id = sorted(embeddings)[cls]
        assert float(torch.cdist(proto[None], embeddings[class_id]).min()) < 1e-5  # a real clip window
    assert torch.unique(bank.prototypes, dim=0).shape[0] == bank.size  # no feature kept twice
    attach_bank(model, bank)  # the builder's own model accepts it
    other = build_model(cfg)  # same config, another (random) encoder
    with pytest.raises(BankError, match="rebuild the bank"):
        attach_bank(other, bank)


def test_size_mismatch_says_how_to_fix_the_config(setup: tuple[Path, int], capsys: pytest.CaptureFixture) -> None:
    root, num_classes = setup
    code = cli_main(["build-bank", "-q", "--checkpoint", str(root / "ckpt"), "--data", str(root / "data"),
                     "--k", "1", "--m", "1", "--out", str(root / "small.safetensors")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (the lines before are tqdm's)
    assert err.startswith("ddavs-rt: error:") and f"set bank.num_prototypes: {num_classes} in the model config" in err
    assert not (root / "small.safetensors").exists()


def test_kmeans_is_seeded_and_finds_separated_modes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 4, generator=g) * 0.1 + 5, torch.randn(20, 4, generator=g) * 0.1 - 5])
    c1, a1 = kmeans(x, 2, torch.Generator().manual_seed(3))
    c2, a2 = kmeans(x, 2, torch.Generator().manual_seed(3))
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    assert len(set(a1[:20].tolist())) == 1 and len(set(a1[20:].tolist())) == 1 and a1[0] != a1[20]

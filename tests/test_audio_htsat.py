"""HTS-AT encoder: shapes, gradients, determinism, Swin helpers, and official checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.config import ModelConfig
from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.htsat import (
    HTSATEncoder,
    relative_position_index,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from ddavs_rt.model.official_audio import load_htsat_checkpoint
from support.official_files import random_state, swin_relative_position_index

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def cfg() -> ModelConfig:
    return ModelConfig(name="t", audio={"kind": "htsat", "drop_path": 0.0})


@pytest.fixture(scope="module")
def encoder(cfg: ModelConfig) -> HTSATEncoder:
    torch.manual_seed(0)
    enc = build_audio_encoder(cfg)
    assert isinstance(enc, HTSATEncoder)
    return enc.eval()


def _audio(batch: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 16000, generator=gen) * 2 - 1


def official_htsat_state(seed: int = 1) -> dict[str, torch.Tensor]:
    """The official HTS-AT AudioSet checkpoint's names and shapes (tests/fixtures/official/
    htsat_audioset.json), random values; Swin's relative_position_index from Swin's definition."""
    state = random_state("htsat_audioset", seed)
    state["bn0.running_var"] = torch.rand(64, generator=torch.Generator().manual_seed(seed)) + 0.5
    for key, value in state.items():
        if key.endswith("attn.relative_position_index"):
            window = int(round(value.shape[0] ** 0.5))
            state[key] = swin_relative_position_index(window)
    state["bn0.num_batches_tracked"] = torch.tensor(1000)
    return state


@pytest.mark.parametrize("batch", [1, 3])
def test_htsat_tokens_are_the_8x8_grid_of_768(encoder: HTSATEncoder, batch: int) -> None:
    with torch.no_grad():
        tokens = encoder(_audio(batch))
    assert encoder.out_dim == 768 and encoder.num_tokens == 64
    assert tokens.shape == (batch, 64, 768)
    pooled = encoder.pool(tokens)
    assert pooled.shape == (batch, 768)
    assert torch.allclose(pooled, tokens.mean(dim=1))


def test_spectrogram_is_folded_into_a_256_square(encoder: HTSATEncoder) -> None:
    with torch.no_grad():
        image = encoder.spectrogram_image(_audio(2))
    assert image.shape == (2, 1, 256, 256)
    # the four stacked 64-band chunks are consecutive stretches of time: the last frame of chunk
    # k and the first of chunk k+1 are neighbours in the 1024-frame resized spectrogram
    chunks = image[:, 0].reshape(2, 4, 64, 256)  # [B, chunk, mel, time]
    seam = (chunks[:, :3, :, -1] - chunks[:, 1:, :, 0]).abs().mean()
    far = (chunks[:, :3, :, -1] - chunks[:, 1:, :, 128]).abs().mean()
    assert seam < far


def test_htsat_is_deterministic_in_eval_and_rows_are_independent(encoder: HTSATEncoder) -> None:
    x = _audio(2, seed=3)
    with torch.no_grad():
        a, b, single = encoder(x), encoder(x.clone()), encoder(x[1:])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:], single, atol=1e-4)


def test_gradients_reach_every_htsat_parameter(cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    enc = build_audio_encoder(cfg).train()
    enc(_audio(2)).pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_window_partition_round_trip_and_layout() -> None:
    x = torch.arange(2 * 16 * 16 * 3, dtype=torch.float32).reshape(2, 16, 16, 3)
    windows = window_partition(x, 8)
    assert windows.shape == (2 * 4, 64, 3)
    assert torch.equal(windows[1].reshape(8, 8, 3), x[0, 0:8, 8:16])  # second window: top right
    assert torch.equal(window_reverse(windows, 8, 16, 16), x)


def test_shifted_mask_separates_regions_and_relative_index_is_centred() -> None:
    mask = shifted_window_mask(16, 16, 8, 4)  # [4 windows, 64, 64]
    assert mask.shape == (4, 64, 64)
    assert (mask[0] == 0).all()  # the first window holds one region only
    last = mask[3]  # bottom right window mixes four regions of 16 positions each
    assert (last == 0).sum() == 4 * 16 * 16 and (last == -100).sum() == 64 * 64 - 4 * 16 * 16
    index = relative_position_index(8)
    assert index.shape == (64, 64) and int(index.min()) == 0 and int(index.max()) == 15 * 15 - 1
    assert (index.diagonal() == 7 * 15 + 7).all()
    assert torch.equal(index, swin_relative_position_index(8))  # Swin's definition


def test_official_htsat_checkpoint_loads_and_changes_outputs(cfg: ModelConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = build_audio_encoder(cfg).eval()
    x = _audio(1, seed=4)
    with torch.no_grad():
        before = enc(x)
    official = official_htsat_state()
    path = tmp_path / "HTSAT_AudioSet_Saved_1.ckpt"
    torch.save({"epoch": 30, "global_step": 1000,
                "state_dict": {"sed_model." + k: v for k, v in official.items()}}, path)
    report = load_htsat_checkpoint(enc, path)
    ours = enc.state_dict()
    assert set(report.loaded) == set(ours)
    for key, value in ours.items():
        assert torch.equal(value, official[key]), key
    assert "tscam_conv.weight" in report.skipped and "logmel_extractor.melW" in report.skipped
    with torch.no_grad():
        after = enc(x)
    assert (after - before).abs().max() > 1e-3


def test_htsat_checkpoint_with_a_wrong_shape_names_key_and_shapes(cfg: ModelConfig, tmp_path: Path) -> None:
    enc = build_audio_encoder(cfg)
    official = official_htsat_state()
    official["layers.2.blocks.3.attn.qkv.weight"] = torch.zeros(1152, 300)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"sed_model." + k: v for k, v in official.items()}}, path)
    with pytest.raises(CheckpointError) as info:
        load_htsat_checkpoint(enc, path)
    message = str(info.value)
    assert "\n" not in message
    assert "layers.2.blocks.3.attn.qkv.weight" in message and "[1152, 300]" in message and "[1152, 384]" in message


def test_htsat_mel_matrix_shape_is_checked_and_other_files_are_refused(cfg: ModelConfig, tmp_path: Path) -> None:
    enc = build_audio_encoder(cfg)
    official = official_htsat_state()
    official["logmel_extractor.melW"] = torch.zeros(513, 128)
    bad_mel = tmp_path / "mel.ckpt"
    torch.save({"state_dict": {"sed_model." + k: v for k, v in official.items()}}, bad_mel)
    with pytest.raises(CheckpointError, match=r"logmel_extractor\.melW.*\[513, 128\].*\[513, 64\]"):
        load_htsat_checkpoint(enc, bad_mel)
    no_prefix = tmp_path / "raw.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}}, no_prefix)
    with pytest.raises(CheckpointError, match="sed_model"):
        load_htsat_checkpoint(enc, no_prefix)
    with pytest.raises(CheckpointError, match="not found"):
        load_htsat_checkpoint(enc, tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_htsat_checkpoint(enc, garbage)


def test_htsat_config_that_cannot_fold_into_the_image_is_refused() -> None:
    from ddavs_rt.errors import ConfigError

    frontend = {"sample_rate": 32000, "n_fft": 1024, "win_length": 1024, "hop_length": 320, "n_mels": 128,
                "f_min": 50.0, "f_max": 14000.0, "power": 2.0, "mel_scale": "slaney", "log": "db",
                "log_offset": 1e-10, "mel_norm": "slaney"}
    with pytest.raises(ConfigError, match="spec_size = n_mels x freq_ratio"):
        build_audio_encoder(ModelConfig(name="t", audio={"kind": "htsat", "frontend": frontend}))


def test_time_stretch_is_the_official_bicubic_interpolation_as_one_matrix():
    """HTS-AT stretches the log-mel to 1024 frames with F.interpolate(mode="bicubic",
    align_corners=True); the encoder applies the same linear map as a MatMul (TensorRT's ONNX
    parser takes Resize in nearest/linear modes only)."""
    import torch.nn.functional as F

    from ddavs_rt.model.htsat import bicubic_time_stretch

    x = torch.randn(2, 1, 101, 64, generator=torch.Generator().manual_seed(0))
    official = F.interpolate(x, size=(1024, 64), mode="bicubic", align_corners=True)
    assert torch.allclose(torch.matmul(bicubic_time_stretch(101, 1024), x), official, atol=1e-5)

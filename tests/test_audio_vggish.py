"""VGGish encoder: shapes, gradients, determinism, and loading the PyTorch port's checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.config import ModelConfig
from ddavs_rt.errors import CheckpointError, ConfigError
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.official_audio import load_vggish_checkpoint
from ddavs_rt.model.vggish import VGGishEncoder

torch.set_num_threads(2)

OFFICIAL_SHAPES: dict[str, tuple[int, ...]] = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}


@pytest.fixture(scope="module")
def encoder() -> VGGishEncoder:
    torch.manual_seed(0)
    enc = build_audio_encoder(ModelConfig(name="t", audio={"kind": "vggish"}))
    assert isinstance(enc, VGGishEncoder)
    return enc.eval()


def _audio(batch: int, seed: int = 0, samples: int = 16000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, samples, generator=gen) * 2 - 1


def _official_state(seed: int = 1) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in OFFICIAL_SHAPES.items():
        fan_in = 1
        for size in shape[1:]:
            fan_in *= size
        state[name] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    state["embeddings.4.bias"] = state["embeddings.4.bias"].abs() + 0.1  # keep the final ReLU open
    return state


@pytest.mark.parametrize("batch", [1, 3])
def test_vggish_gives_one_128_d_token_per_window(encoder: VGGishEncoder, batch: int) -> None:
    with torch.no_grad():
        tokens = encoder(_audio(batch))
    assert tokens.shape == (batch, 1, 128) and encoder.num_tokens == 1
    assert encoder.pool(tokens).shape == (batch, 128)
    assert (tokens >= 0).all()  # the port ends with a ReLU


def test_vggish_module_names_are_the_ports_keys(encoder: VGGishEncoder) -> None:
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == OFFICIAL_SHAPES


def test_vggish_reads_only_the_first_96_frames(encoder: VGGishEncoder) -> None:
    x = _audio(1, seed=2)
    y = x.clone()
    y[:, 15700:] = 0.0  # frame 95 ends at sample 95 * 160 + 400 = 15600
    with torch.no_grad():
        assert torch.equal(encoder(x), encoder(y))


def test_vggish_is_deterministic_in_eval(encoder: VGGishEncoder) -> None:
    x = _audio(2, seed=3)
    with torch.no_grad():
        assert torch.equal(encoder(x), encoder(x.clone()))


def test_gradients_reach_every_vggish_parameter(tmp_path: Path) -> None:
    enc = build_audio_encoder(ModelConfig(name="t", audio={"kind": "vggish"})).train()
    torch.save(_official_state(), tmp_path / "vggish.pth")
    load_vggish_checkpoint(enc, tmp_path / "vggish.pth")  # scaled weights keep every ReLU path alive
    enc(_audio(2)).pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_vggish_port_checkpoint_loads_and_changes_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = build_audio_encoder(ModelConfig(name="t", audio={"kind": "vggish"})).eval()
    x = _audio(1, seed=4)
    with torch.no_grad():
        before = enc(x)
    official = _official_state()
    official["pproc._pca_matrix"] = torch.zeros(128, 128)  # PCA tensors of some ports: skipped
    path = tmp_path / "vggish-10086976.pth"
    torch.save(official, path)
    report = load_vggish_checkpoint(enc, path)
    assert report.skipped == ["pproc._pca_matrix"]
    for key, value in enc.state_dict().items():
        assert torch.equal(value, official[key]), key
    with torch.no_grad():
        after = enc(x)
    assert (after - before).abs().max() > 1e-4


def test_vggish_wrong_shape_or_unknown_key_is_a_one_line_error(encoder: VGGishEncoder, tmp_path: Path) -> None:
    official = _official_state()
    official["embeddings.0.weight"] = torch.zeros(4096, 8192)
    path = tmp_path / "bad.pth"
    torch.save(official, path)
    with pytest.raises(CheckpointError) as info:
        load_vggish_checkpoint(encoder, path)
    assert "\n" not in str(info.value)
    assert "embeddings.0.weight" in str(info.value) and "[4096, 8192]" in str(info.value) and "[4096, 12288]" in str(info.value)
    official = _official_state()
    official["classifier.weight"] = torch.zeros(2)
    torch.save(official, path)
    with pytest.raises(CheckpointError, match="unexpected key 'classifier.weight'"):
        load_vggish_checkpoint(encoder, path)
    official = _official_state()
    del official["features.13.bias"]
    torch.save(official, path)
    with pytest.raises(CheckpointError, match="features.13.bias"):
        load_vggish_checkpoint(encoder, path)


def test_vggish_needs_a_full_example() -> None:
    with pytest.raises(ConfigError, match="96 frames"):
        build_audio_encoder(ModelConfig(name="t", audio={"kind": "vggish"}, window_seconds=0.5))

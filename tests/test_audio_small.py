"""The small CPU audio encoder through the public factory."""

from __future__ import annotations

import pytest
import torch

from ddavs_rt.config import ModelConfig
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.audio_encoder import AudioEncoder, build_audio_encoder

torch.set_num_threads(1)


def _cfg(**overrides: object) -> ModelConfig:
    return ModelConfig(name="t", audio={"kind": "small"}, **overrides)


def _audio(batch: int, samples: int = 16000, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, samples, generator=gen) * 2 - 1


@pytest.mark.parametrize("batch", [1, 3])
def test_small_encoder_token_shapes_at_16k_one_second(batch: int) -> None:
    enc = build_audio_encoder(_cfg()).eval()
    assert isinstance(enc, AudioEncoder) and enc.out_dim == 128
    tokens = enc(_audio(batch))
    assert tokens.shape == (batch, enc.num_tokens, 128)
    assert 12 <= enc.num_tokens <= 25
    assert enc.pool(tokens).shape == (batch, 128)
    assert torch.isfinite(tokens).all()


def test_small_encoder_resamples_other_model_rates_in_the_graph() -> None:
    enc = build_audio_encoder(_cfg(sample_rate=48000)).eval()
    ref = build_audio_encoder(_cfg()).eval()
    assert enc.frontend.resampler is not None and ref.frontend.resampler is None
    assert enc(_audio(2, 48000)).shape == (2, ref.num_tokens, 128)


def test_gradients_reach_every_small_encoder_parameter() -> None:
    enc = build_audio_encoder(_cfg()).train()
    enc(_audio(2)).pow(2).mean().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_small_encoder_is_deterministic_in_eval_and_depends_on_audio() -> None:
    enc = build_audio_encoder(_cfg()).eval()
    x = _audio(2)
    with torch.no_grad():
        a, b = enc(x), enc(x.clone())
        other = enc(_audio(2, seed=1))
    assert torch.equal(a, b)
    assert (a - other).abs().max() > 1e-3
    # rows are independent: batch 2 equals the two batch-1 runs
    with torch.no_grad():
        single = enc(x[1:])
    assert torch.allclose(a[1:], single, atol=1e-5)


def test_too_short_window_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="window"):
        build_audio_encoder(_cfg(window_seconds=0.02))


def test_small_encoder_channels_are_validated() -> None:
    from ddavs_rt.config import parse_config

    with pytest.raises(ConfigError, match="audio.small.channels"):
        parse_config({"name": "t", "audio": {"kind": "small", "channels": []}}, ModelConfig)
    enc = build_audio_encoder(ModelConfig(name="t", audio={"kind": "small", "channels": [8, 16], "dim": 32}))
    assert enc(_audio(1)).shape == (1, enc.num_tokens, 32) and enc.num_tokens == 25

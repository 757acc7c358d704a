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
from support.official_files import describe

torch.set_num_threads(2)

# names and shapes of torchvggish's vggish-10086976.pth (tests/fixtures/official/vggish_torchvggish.json)
OFFICIAL_SHAPES: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in describe("vggish_torchvggish")["keys"].items()}


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


# ------------------------------------------------------------------ log-mel front-end vs mel_features.py


def mel_features_matrix(num_mel_bins: int, num_spectrogram_bins: int, rate: float, lower_hz: float, upper_hz: float):
    """VGGish mel_features.spectrogram_to_mel_matrix from its definition, in numpy float64:
    hertz_to_mel(f) = 1127 ln(1 + f / 700); bins at linspace(0, rate / 2, num_spectrogram_bins);
    num_mel_bins + 2 edges evenly spaced in mel; triangle i = max(0, min(rising, falling)) with the
    slopes measured in mel; row 0 (DC) zeroed."""
    import numpy as np

    def hertz_to_mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)

    bins_mel = hertz_to_mel(np.linspace(0.0, rate / 2.0, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bins + 2)
    out = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lo, mid, hi = edges[i : i + 3]
        out[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (mid - lo), (hi - bins_mel) / (hi - mid)))
    out[0, :] = 0.0
    return out


def vggish_log_mel_reference(wave):
    """vggish_input.waveform_to_examples' log-mel from mel_features.log_mel_spectrogram's definition
    (16 kHz, 25 ms window, 10 ms hop, periodic Hann, fft length 512, |rfft|, 64 bands 125-7500 Hz,
    ln(mel + 0.01)), frames taken from the first sample without padding. numpy float64 [T, 64]."""
    import numpy as np

    window_length, hop_length, fft_length = 400, 160, 512
    n = 1 + (wave.size - window_length) // hop_length
    frames = np.stack([wave[i * hop_length : i * hop_length + window_length] for i in range(n)])
    periodic_hann = 0.5 - 0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length))
    spectrogram = np.abs(np.fft.rfft(frames * periodic_hann, fft_length))
    mel = spectrogram @ mel_features_matrix(64, fft_length // 2 + 1, 16000, 125.0, 7500.0)
    return np.log(mel + 0.01)


def test_vggish_filterbank_is_mel_features_matrix() -> None:
    import numpy as np
    import torchaudio

    from ddavs_rt.model.frontend import LogMel

    cfg = ModelConfig(name="t", audio={"kind": "vggish"}).audio.frontend
    ours = LogMel(cfg, input_rate=16000).mel_fb.double().numpy()
    official = mel_features_matrix(64, 257, 16000, 125.0, 7500.0)
    assert np.abs(ours - official).max() < 1e-7
    # torchaudio's HTK option (triangles linear in Hz) is a different matrix: the test can tell
    htk = torchaudio.functional.melscale_fbanks(257, 125.0, 7500.0, 64, 16000, norm=None, mel_scale="htk").double().numpy()
    assert np.abs(htk - official).max() > 1e-3


def test_vggish_log_mel_matches_mel_features_to_1e_5() -> None:
    import numpy as np

    from ddavs_rt.model.frontend import LogMel

    cfg = ModelConfig(name="t", audio={"kind": "vggish"}).audio.frontend
    wave = (_audio(1, seed=4, samples=16000) * 0.5).double()
    ours = LogMel(cfg, input_rate=16000)(wave.float())[0, 0].double().numpy()  # [T, 64]
    reference = vggish_log_mel_reference(wave[0].numpy())
    assert ours.shape == reference.shape == (98, 64)
    assert np.abs(ours - reference).max() < 1e-5


def test_small_encoder_keeps_the_filterbank_it_was_trained_with() -> None:
    """The small encoder (the shipped model's) keeps torchaudio's HTK filterbank by default."""
    assert ModelConfig(name="t", audio={"kind": "small"}).audio.frontend.mel_scale == "htk"

"""The in-graph audio front-end against torchaudio: STFT, mel, log, resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchaudio

from ddavs_rt.config import AudioFrontEndConfig, HTSATConfig, VGGishConfig
from ddavs_rt.model.frontend import ConvSTFT, LogMel, SincResampler

torch.set_num_threads(1)


def _noise(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, samples, generator=gen) * 2 - 1  # [B, S] in [-1, 1]


def _tone(freq: float, rate: int, samples: int, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(samples, dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * freq * t)).to(torch.float32)[None]  # [1, S]


@pytest.mark.parametrize(
    "n_fft,win,hop,power",
    [(1024, 1024, 320, 2.0), (512, 400, 160, 1.0)],
)
def test_conv_stft_matches_torchaudio_spectrogram(n_fft: int, win: int, hop: int, power: float) -> None:
    x = _noise(2, 8000)
    ours = ConvSTFT(n_fft, win, hop, power, center=True, pad_mode="reflect")(x)  # [B, T, bins]
    ref = torchaudio.transforms.Spectrogram(
        n_fft=n_fft, win_length=win, hop_length=hop, power=power, center=True, pad_mode="reflect"
    )(x).transpose(1, 2)  # [B, T, bins]
    assert ours.shape == ref.shape
    scale = ref.abs().max()
    assert (ours - ref).abs().max() / scale < 1e-5


def test_uncentred_stft_frames_like_vggish() -> None:
    """center=False: frames of win_length samples from sample 0, zero-padded to n_fft."""
    x = _noise(1, 4000, seed=3)
    ours = ConvSTFT(512, 400, 160, 1.0, center=False, pad_mode="reflect")(x)[0].numpy()
    signal = x[0].numpy().astype(np.float64)
    window = np.hanning(401)[:-1]  # periodic Hann of 400
    frames = 1 + (4000 - 400) // 160
    ref = np.stack([np.abs(np.fft.rfft(signal[i * 160 : i * 160 + 400] * window, n=512)) for i in range(frames)])
    assert ours.shape == ref.shape == (frames, 257)
    assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5


def test_htsat_logmel_matches_torchaudio_melspectrogram_in_db() -> None:
    cfg = HTSATConfig().frontend
    x = _noise(2, 16000, seed=1)
    ours = LogMel(cfg, input_rate=cfg.sample_rate)(x)  # [B, 1, T, 64]
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length, hop_length=cfg.hop_length,
        f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0, center=True, pad_mode="reflect",
        norm="slaney", mel_scale="slaney",
    )(x)  # [B, 64, T]
    ref = 10 * torch.log10(mel.clamp_min(cfg.log_offset)).transpose(1, 2)[:, None]
    assert ours.shape == ref.shape == (2, 1, 1 + 16000 // 320, 64)
    assert (ours - ref).abs().max() < 1e-3  # dB


def test_vggish_logmel_matches_torchaudio_melspectrogram_in_ln() -> None:
    # torchaudio's HTK filterbank (the small encoder's); VGGish's own matrix is tested against
    # mel_features.py's definition in test_audio_vggish.py
    cfg = VGGishConfig().frontend.model_copy(update={"center": True, "mel_scale": "htk"})
    x = _noise(1, 16000, seed=2)
    ours = LogMel(cfg, input_rate=16000)(x)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=512, win_length=400, hop_length=160, f_min=125.0, f_max=7500.0,
        n_mels=64, power=1.0, center=True, pad_mode="reflect", norm=None, mel_scale="htk",
    )(x)
    ref = torch.log(mel + 0.01).transpose(1, 2)[:, None]
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["vggish", "htsat"])
def test_one_khz_tone_peaks_in_the_mel_band_centred_nearest_1khz(kind: str) -> None:
    cfg = (VGGishConfig() if kind == "vggish" else HTSATConfig()).frontend
    front = LogMel(cfg, input_rate=16000)
    logmel = front(_tone(1000.0, 16000, 16000))[0, 0]  # [T, M]
    peak = int(logmel[5:-5].mean(dim=0).argmax())
    # band centres: the inner points of n_mels + 2 points evenly spaced on the mel scale
    def hz_to_mel(f: float) -> float:
        if cfg.mel_scale in ("htk", "vggish"):
            return 2595.0 * math.log10(1 + f / 700.0)
        return 3 * f / 200 if f < 1000 else 15 + math.log(f / 1000) / (math.log(6.4) / 27)

    mels = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2)[1:-1]
    nearest = int(np.abs(mels - hz_to_mel(1000.0)).argmin())
    assert peak == nearest
    assert logmel[5:-5, peak].mean() > logmel[5:-5, (peak + 8) % cfg.n_mels].mean() + 3


def test_resampler_matches_torchaudio_and_keeps_tone_frequency_and_amplitude() -> None:
    tone = _tone(1000.0, 16000, 16000, amplitude=0.5)
    ours = SincResampler(16000, 32000)(tone)  # [1, 32000]
    ref = torchaudio.functional.resample(tone, 16000, 32000)
    assert ours.shape == ref.shape == (1, 32000)
    assert (ours - ref).abs().max() < 1e-5
    middle = ours[0, 4000:-4000].double()
    spectrum = torch.fft.rfft(middle).abs()
    peak_hz = int(spectrum.argmax()) * 32000 / middle.numel()
    assert abs(peak_hz - 1000.0) < 2.0
    rms = middle.pow(2).mean().sqrt().item()
    assert abs(rms - 0.5 / math.sqrt(2)) < 0.005


def test_resampler_handles_non_integer_ratios_like_torchaudio() -> None:
    x = _noise(3, 4410, seed=4)
    ours = SincResampler(44100, 16000)(x)
    ref = torchaudio.functional.resample(x, 44100, 16000)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-5


def test_logmel_resamples_when_the_model_rate_differs_and_counts_frames() -> None:
    cfg = HTSATConfig().frontend  # 32 kHz encoder fed 16 kHz audio
    front = LogMel(cfg, input_rate=16000)
    x = _noise(2, 16000, seed=5)
    out = front(x)
    assert out.shape == (2, 1, front.num_frames(16000), 64) == (2, 1, 101, 64)
    direct = LogMel(cfg, input_rate=32000)(torchaudio.functional.resample(x, 16000, 32000))
    assert (out - direct).abs().max() < 1e-2


def test_frontend_config_rejects_window_longer_than_fft() -> None:
    with pytest.raises(ValueError, match="win_length"):
        AudioFrontEndConfig(n_fft=256, win_length=400)

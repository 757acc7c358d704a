"""COM waveform augmentation: length kept, pitch moves a tone by the asked cents, SNR as asked,
compression lowers the crest factor, determinism by seed."""

from __future__ import annotations

import math

import pytest
import torch

from ddavs_rt.config import AugmentConfig
from ddavs_rt.train.augment import (
    WaveAugment, add_noise_at_snr, compress, pitch_shift_resample, pitch_shift_vocoder, reverberate,
)

torch.set_num_threads(1)
SR = 16000


def _tone(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(SR * seconds)) / SR
    return amp * torch.sin(2 * math.pi * freq * t)


def _peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1], periodic=False))
    return float(spectrum.abs().argmax()) * SR / x.shape[-1]


def test_every_step_and_the_whole_chain_keep_the_length() -> None:
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(3, SR) * 0.1
    assert reverberate(audio, torch.tensor([20.0, 30.0, 40.0]), SR, g).shape == audio.shape
    assert pitch_shift_resample(audio, torch.tensor([150.0, -150.0, 0.0])).shape == audio.shape
    assert compress(audio, SR).shape == audio.shape
    out = WaveAugment(AugmentConfig(), SR)(audio, g)
    assert out.shape == audio.shape and out.abs().max() <= 1.0
    assert not torch.allclose(out, audio)


@pytest.mark.parametrize("cents", [150.0, -150.0, 100.0])
def test_resample_pitch_shift_moves_a_tone_by_the_asked_cents(cents: float) -> None:
    shifted = pitch_shift_resample(_tone(1000.0)[None], torch.tensor([cents]))[0]
    expected = 1000.0 * 2 ** (cents / 1200)
    assert abs(_peak_hz(shifted) - expected) <= 2.0  # 1 Hz bins


def test_vocoder_pitch_shift_moves_a_tone_too() -> None:
    shifted = pitch_shift_vocoder(_tone(1000.0)[None], torch.tensor([150.0]), SR)[0]
    assert shifted.shape == (SR,)
    assert abs(_peak_hz(shifted) - 1000.0 * 2 ** (150 / 1200)) <= 6.0


def test_noise_is_added_at_the_asked_snr() -> None:
    g = torch.Generator().manual_seed(3)
    clean = torch.stack([_tone(440.0), _tone(880.0, amp=0.1)])
    snr = torch.tensor([10.0, 20.0])
    noisy = add_noise_at_snr(clean, snr, g)
    noise = noisy - clean
    measured = 10 * torch.log10(clean.pow(2).sum(-1) / noise.pow(2).sum(-1))
    assert torch.allclose(measured, snr, atol=0.01)


def test_compression_lowers_the_crest_factor() -> None:
    t = torch.arange(SR) / SR
    bursts = (torch.sin(2 * math.pi * 3 * t) > 0.7).float() * 0.8 + 0.05  # loud bursts, quiet rest
    x = (bursts * torch.sin(2 * math.pi * 300 * t))[None]
    y = compress(x, SR)

    def crest(v: torch.Tensor) -> float:
        return float(v.abs().max() / v.pow(2).mean().sqrt())

    assert crest(y) < 0.8 * crest(x)


def test_reverb_tail_grows_with_room_scale() -> None:
    g = torch.Generator().manual_seed(1)
    click = torch.zeros(2, SR)
    click[:, 100] = 1.0
    out = reverberate(click, torch.tensor([20.0, 40.0]), SR, g)
    late = out[:, 100 + int(0.15 * SR): 100 + int(0.3 * SR)].pow(2).sum(-1)
    assert late[1] > 10 * late[0]


def test_same_seed_same_output_other_seed_differs() -> None:
    audio = torch.randn(2, SR) * 0.1
    aug = WaveAugment(AugmentConfig(), SR)
    a = aug(audio, torch.Generator().manual_seed(7))
    b = aug(audio, torch.Generator().manual_seed(7))
    c = aug(audio, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)

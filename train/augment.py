"""COM waveform augmentation (paper Table 7): reverb, pitch shift, compression, noise at an SNR.

    aug = WaveAugment(cfg, sample_rate)
    audio_aug = aug(audio, generator)          # [B, S] -> [B, S], each row its own draw

Steps, in order, each with its parameters drawn per row from `generator`:
1. reverberation: a synthetic impulse response, unit direct path plus exponentially decaying
   noise, RT60 = room_scale / 100 s (room scale 20-40 -> 0.2-0.4 s), convolved with
   torchaudio.functional.fftconvolve and cut back to the input length, loudness kept;
2. pitch shift within +-pitch_cents: by default a resampling shift that keeps the length
   (read the window at rate 2^(c/1200) with linear interpolation, wrapping around the window;
   the whole chain costs ~1.6 ms per 1-s window here, the phase vocoder ~4 s), or `pitch_method="vocoder"`
   for torchaudio.functional.pitch_shift (n_steps = cents, bins_per_octave = 1200);
3. dynamic-range compression with fixed settings, feed-forward with look-ahead: the envelope is
   the peak of |x| over +-5 ms, smoothed over +-5 ms (centred, so a loud onset is caught before
   it passes: a lagging one-pole follower lets onsets through at full make-up gain), then
   threshold, ratio and make-up gain;
4. volume jitter: white noise added at an SNR drawn from snr_db (torchaudio add_noise).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor

from ddavs_rt.config import AugmentConfig

COMPRESSOR_THRESHOLD_DB = -30.0
COMPRESSOR_RATIO = 4.0
COMPRESSOR_MAKEUP_DB = 6.0
COMPRESSOR_TIME_S = 0.005
REVERB_WET = 0.5


def _uniform(low: float, high: float, n: int, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _rms(x: Tensor) -> Tensor:
    """[B, S] -> [B, 1]"""
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt()


def impulse_response(room_scale: Tensor, sample_rate: int, generator: torch.Generator) -> Tensor:
    """room_scale [B] -> impulse responses [B, L]: 1 at t = 0 plus noise decaying 60 dB by RT60."""
    rt60 = room_scale / 100.0  # seconds: room 20 -> 0.2 s, 40 -> 0.4 s
    length = int(math.ceil(float(rt60.max()) * sample_rate))
    t = torch.arange(length, dtype=torch.float32) / sample_rate  # [L]
    decay = torch.exp(-6.9078 * t[None, :] / rt60[:, None])  # 60 dB decay: ln(1000) = 6.9078
    tail = torch.randn(room_scale.shape[0], length, generator=generator) * decay  # [B, L]
    tail = tail / tail.pow(2).sum(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)  # unit energy
    ir = REVERB_WET * tail
    ir[:, 0] += 1.0  # direct path
    return ir


def reverberate(audio: Tensor, room_scale: Tensor, sample_rate: int, generator: torch.Generator) -> Tensor:
    """[B, S] -> [B, S]: convolved with a room's impulse response, RMS kept."""
    ir = impulse_response(room_scale, sample_rate, generator)  # [B, L]
    wet = AF.fftconvolve(audio, ir)[:, : audio.shape[-1]]  # [B, S + L - 1] -> [B, S]
    return wet * (_rms(audio) / _rms(wet).clamp_min(1e-8))


def pitch_shift_resample(audio: Tensor, cents: Tensor) -> Tensor:
    """[B, S], cents [B] -> [B, S]: read at rate 2^(c/1200), linear interpolation, wrapping."""
    b, s = audio.shape
    rate = torch.pow(2.0, cents / 1200.0)  # [B]
    position = torch.arange(s, dtype=torch.float64)[None, :] * rate.double()[:, None]  # [B, S]
    left = torch.floor(position)
    frac = (position - left).to(audio.dtype)
    i0 = left.long() % s
    i1 = (i0 + 1) % s
    x0 = torch.gather(audio, 1, i0)
    x1 = torch.gather(audio, 1, i1)
    return x0 + frac * (x1 - x0)


def pitch_shift_vocoder(audio: Tensor, cents: Tensor, sample_rate: int) -> Tensor:
    """torchaudio's phase-vocoder shift, one row at a time (n_steps in cents)."""
    rows = [
        AF.pitch_shift(row[None], sample_rate, n_steps=float(c), bins_per_octave=1200)[0]
        for row, c in zip(audio, cents.tolist())
    ]
    return torch.stack(rows)


def compress(audio: Tensor, sample_rate: int, threshold_db: float = COMPRESSOR_THRESHOLD_DB,
             ratio: float = COMPRESSOR_RATIO, makeup_db: float = COMPRESSOR_MAKEUP_DB,
             time_s: float = COMPRESSOR_TIME_S) -> Tensor:
    """Feed-forward compressor: [B, S] -> [B, S]."""
    half = max(1, int(round(time_s * sample_rate)))
    width = 2 * half + 1
    peak = F.max_pool1d(audio.abs()[:, None, :], width, stride=1, padding=half)  # [B, 1, S]
    envelope = F.avg_pool1d(peak, width, stride=1, padding=half, count_include_pad=False)[:, 0]  # [B, S]
    level_db = 20.0 * torch.log10(envelope.clamp_min(1e-6))
    over_db = (level_db - threshold_db).clamp_min(0.0)
    gain_db = -over_db * (1.0 - 1.0 / ratio) + makeup_db
    return audio * torch.pow(10.0, gain_db / 20.0)


def add_noise_at_snr(audio: Tensor, snr_db: Tensor, generator: torch.Generator) -> Tensor:
    """[B, S], snr_db [B] -> [B, S] with white noise at that SNR (silent rows stay silent)."""
    noise = torch.randn(audio.shape, generator=generator, dtype=audio.dtype)
    return AF.add_noise(audio, noise, snr_db.to(audio.dtype))


class WaveAugment:
    """The COM augmentation of a batch of windows; see the module docstring."""

    def __init__(self, cfg: AugmentConfig, sample_rate: int, pitch_method: str = "resample") -> None:
        if pitch_method not in ("resample", "vocoder"):
            raise ValueError(f"pitch_method must be 'resample' or 'vocoder', got {pitch_method!r}")
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.pitch_method = pitch_method

    def __call__(self, audio: Tensor, generator: torch.Generator) -> Tensor:
        """audio float32 [B, S] (CPU) -> augmented [B, S] in [-1, 1]."""
        b = audio.shape[0]
        cfg = self.cfg
        x = audio.float()
        x = reverberate(x, _uniform(*cfg.reverb_room_scale, b, generator), self.sample_rate, generator)
        if cfg.pitch_cents > 0:
            cents = _uniform(-cfg.pitch_cents, cfg.pitch_cents, b, generator)
            x = pitch_shift_resample(x, cents) if self.pitch_method == "resample" else pitch_shift_vocoder(x, cents, self.sample_rate)
        if cfg.compression:
            x = compress(x, self.sample_rate)
        x = add_noise_at_snr(x, _uniform(*cfg.snr_db, b, generator), generator)
        return x.clamp(-1.0, 1.0)

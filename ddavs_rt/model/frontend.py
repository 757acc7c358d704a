"""Audio front-end inside the graph: waveform -> (resample) -> STFT -> mel -> log.

Every step is a fixed convolution or an elementwise op on registered buffers, so the front-end
exports to ONNX (and from there to TensorRT) and every backend sees raw audio:

- `SincResampler`: windowed-sinc polyphase FIR as one strided conv1d (the kernel math follows
  the Hann-windowed sinc interpolation that torchaudio.functional.resample uses).
- `ConvSTFT`: real and imaginary DFT bases (window x cos / -sin) as conv1d kernels.
- `LogMel`: the two above, then a mel filterbank (torchaudio.functional.melscale_fbanks, or
  `vggish_mel_matrix` for VGGish) and `ln(mel + offset)` (VGGish) or `10 log10(max(mel, amin))`
  (HTSAT / torchlibrosa).
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from ddavs_rt.config import AudioFrontEndConfig

log = logging.getLogger(__name__)


def sinc_resample_kernel(orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
                         rolloff: float = 0.99) -> tuple[Tensor, int, int, int]:
    """Polyphase Hann-windowed sinc kernel for resampling orig_freq -> new_freq.

    Returns (kernel [new, 1, 2 * width + orig], width, orig, new) with orig/new reduced by their
    gcd. Output phase j of each block of `new` samples is the conv of the input with kernel[j].
    """
    g = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // g, new_freq // g
    base_freq = min(orig, new) * rolloff  # cut-off just below the lower Nyquist frequency
    width = math.ceil(lowpass_filter_width * orig / base_freq)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, :] / orig  # [1, K]
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new  # [new, 1]
    t = (phase + idx) * base_freq  # [new, K], in units of the low-pass period
    t = t.clamp(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = sinc * window * (base_freq / orig)
    return kernel[:, None, :].to(torch.float32), width, orig, new


class SincResampler(nn.Module):
    """Resample [B, S] at orig_freq to [B, ceil(S * new / orig)] at new_freq with one conv1d."""

    def __init__(self, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
                 rolloff: float = 0.99) -> None:
        super().__init__()
        kernel, width, orig, new = sinc_resample_kernel(orig_freq, new_freq, lowpass_filter_width, rolloff)
        self.register_buffer("kernel", kernel, persistent=False)  # [new, 1, K]
        self.width, self.orig, self.new = width, orig, new

    def output_length(self, num_samples: int) -> int:
        return math.ceil(self.new * num_samples / self.orig)

    def forward(self, waveform: Tensor) -> Tensor:
        num_samples = waveform.shape[-1]
        x = F.pad(waveform[:, None, :], (self.width, self.width + self.orig))  # [B, 1, S + pads]
        y = F.conv1d(x, self.kernel, stride=self.orig)  # [B, new, blocks]
        y = y.transpose(1, 2).reshape(waveform.shape[0], -1)  # [B, blocks * new], phases interleaved
        return y[:, : self.output_length(num_samples)]


def dft_kernels(n_fft: int, win_length: int) -> tuple[Tensor, Tensor]:
    """Real and imaginary DFT bases times a periodic Hann window: each [n_fft // 2 + 1, 1, win_length].

    An n_fft-point DFT of a frame of `win_length` windowed samples zero-padded to n_fft. Where the
    window sits inside the n_fft frame changes only the phase, never the magnitude, so the kernel
    stops at the window's end (the zero taps would only cost time).
    """
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    n = torch.arange(win_length, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft  # [bins, win]
    real = (torch.cos(angle) * window)[:, None, :].to(torch.float32)
    imag = (-torch.sin(angle) * window)[:, None, :].to(torch.float32)
    return real, imag


class ConvSTFT(nn.Module):
    """|STFT|^power of [B, S] as [B, T, n_fft // 2 + 1], computed with two fixed conv1d bases.

    center=True frames like torch.stft(center=True): pad n_fft // 2 each side (`pad_mode`), the
    window centred in each n_fft frame; T = 1 + S // hop. center=False frames like VGGish: frames
    of `win_length` samples from the first sample, no padding; T = 1 + (S - win_length) // hop.
    """

    def __init__(self, n_fft: int, win_length: int, hop_length: int, power: float,
                 center: bool, pad_mode: str) -> None:
        super().__init__()
        real, imag = dft_kernels(n_fft, win_length)
        self.register_buffer("conv_real", real, persistent=False)  # [bins, 1, win]
        self.register_buffer("conv_imag", imag, persistent=False)
        self.n_fft, self.win_length, self.hop_length, self.power = n_fft, win_length, hop_length, power
        self.center, self.pad_mode = center, pad_mode

    def num_frames(self, num_samples: int) -> int:
        if self.center:
            return 1 + num_samples // self.hop_length
        return 1 + (num_samples - self.win_length) // self.hop_length

    def forward(self, waveform: Tensor) -> Tensor:
        x = waveform[:, None, :]  # [B, 1, S]
        if self.center:
            half = self.n_fft // 2
            x = F.pad(x, (half, half), mode=self.pad_mode)  # [B, 1, S + n_fft]
            skip = (self.n_fft - self.win_length) // 2  # where torch.stft puts the window
            if skip:
                x = x[:, :, skip:]
        real = F.conv1d(x, self.conv_real, stride=self.hop_length)  # [B, bins, T]
        imag = F.conv1d(x, self.conv_imag, stride=self.hop_length)
        power2 = real * real + imag * imag
        if self.power == 2.0:
            spec = power2
        elif self.power == 1.0:
            spec = torch.sqrt(power2.clamp_min(1e-20))  # clamp keeps the gradient finite at 0
        else:
            spec = power2.clamp_min(1e-20) ** (self.power / 2)
        return spec.transpose(1, 2)  # [B, T, bins]


def vggish_mel_matrix(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    """The filterbank of VGGish's mel_features.py, [n_freqs, n_mels] float64.

    Spectrogram bins sit at linspace(0, Nyquist, n_freqs) Hz and are placed on the HTK mel scale
    1127 ln(1 + f / 700); n_mels + 2 band edges are evenly spaced in mel from f_min to f_max, and
    each triangle rises and falls linearly *in mel* between its neighbours' centres (peak 1, no
    area normalisation); the DC bin gets no weight. torchaudio's "htk" option draws the triangles
    linearly in Hz instead, which is a different matrix.
    """
    def to_mel(hz: Tensor) -> Tensor:
        return 1127.0 * torch.log1p(hz / 700.0)

    bins_mel = to_mel(torch.linspace(0.0, sample_rate / 2.0, n_freqs, dtype=torch.float64))  # [F]
    edges = torch.linspace(float(to_mel(torch.tensor(f_min, dtype=torch.float64))),
                           float(to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]  # [M] each
    rising = (bins_mel[:, None] - lower) / (centre - lower)  # [F, M]
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    matrix = torch.minimum(rising, falling).clamp_min(0.0)
    matrix[0] = 0.0
    return matrix


class LogMel(nn.Module):
    """Waveform [B, S] at `input_rate` -> log-mel [B, 1, T, n_mels] at the encoder's rate."""

    def __init__(self, cfg: AudioFrontEndConfig, input_rate: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.resampler = SincResampler(input_rate, cfg.sample_rate) if input_rate != cfg.sample_rate else None
        self.stft = ConvSTFT(cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.power, cfg.center, cfg.pad_mode)
        if cfg.mel_scale == "vggish":
            mel = vggish_mel_matrix(cfg.n_fft // 2 + 1, cfg.n_mels, cfg.sample_rate, cfg.f_min, cfg.f_max)
        else:
            mel = torchaudio.functional.melscale_fbanks(
                n_freqs=cfg.n_fft // 2 + 1, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
                sample_rate=cfg.sample_rate, norm=None if cfg.mel_norm == "none" else cfg.mel_norm,
                mel_scale=cfg.mel_scale,
            )
        self.register_buffer("mel_fb", mel.to(torch.float32), persistent=False)  # [bins, n_mels]
        if input_rate != cfg.sample_rate:
            log.debug("front-end resamples %d Hz -> %d Hz in the graph", input_rate, cfg.sample_rate)

    def __call__(self, waveform: Tensor) -> Tensor:
        """The front-end computes in fp32 in every precision: under autocast (training AMP, the
        torch backend's fp16) autocast is off inside it, and in a `.half()` model its fixed bases
        stay fp32 (`_apply`). In fp16 the decibel floor `amin` = 1e-10 is 0 (silence gives -inf)
        and the power spectrum of a full-scale tone reaches 65504 (inf, then NaN). The log-mel
        goes back in the waveform's dtype: decibels fit fp16 easily."""
        dtype = waveform.dtype
        if dtype == torch.float32 and not torch.is_autocast_enabled(waveform.device.type):
            return super().__call__(waveform)  # plain fp32 (and every export): nothing to do
        with torch.autocast(waveform.device.type, enabled=False):
            out = super().__call__(waveform.float())
        return out.to(dtype)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """`.half()`, `.bfloat16()`, `.to(dtype)` leave the fixed fp32 bases (DFT, mel, resampler
        kernels) fp32: rounded to fp16 they would raise the spectral floor by ~40 dB. Device moves
        apply as usual."""
        before = dict(self.named_buffers())
        super()._apply(fn, recurse)
        for name, old in before.items():
            path, _, attr = name.rpartition(".")
            owner = self.get_submodule(path) if path else self
            new = getattr(owner, attr)
            if new.dtype != old.dtype:
                setattr(owner, attr, old.to(new.device))
        return self

    def num_frames(self, num_samples: int) -> int:
        """Frames T produced for an input of `num_samples` samples at the input rate."""
        if self.resampler is not None:
            num_samples = self.resampler.output_length(num_samples)
        return self.stft.num_frames(num_samples)

    def forward(self, waveform: Tensor) -> Tensor:
        x = waveform if self.resampler is None else self.resampler(waveform)  # [B, S']
        spec = self.stft(x)  # [B, T, bins]
        mel = torch.matmul(spec, self.mel_fb)  # [B, T, n_mels]
        if self.cfg.log == "ln":
            out = torch.log(mel + self.cfg.log_offset)
        else:
            out = 10.0 * torch.log10(mel.clamp_min(self.cfg.log_offset))
        return out[:, None]  # [B, 1, T, n_mels]

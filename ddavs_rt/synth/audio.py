"""Sound synthesis for SynthAVS: one `Voice` per sounding instance, pure functions of time.

A voice's parameters are drawn once from a class's `SoundSpec` with a numpy Generator; after
that `voice.render(start, n)` returns samples [start, start + n) of an endless signal as a pure
function of the absolute sample index. The dataset writer renders [0, 5 s) at once; the live
scene renders one frame period at a time, and consecutive blocks join without a seam because
nothing depends on how the time line was cut. Random detail that must vary over time (burst
jitter, click amplitudes) comes from small per-voice tables indexed by event number; noise comes
from a periodic buffer band-shaped in the frequency domain (circular, so its loop is seamless).
"""

from __future__ import annotations

import io
import wave

import numpy as np

from ddavs_rt.synth.classes import SoundSpec

SAMPLE_RATE = 16000
_TABLE = 64  # length of the per-voice random tables (event jitter, amplitudes)
_LOOP = 1 << 16  # noise loop length in samples (4.1 s at 16 kHz)
_NYQUIST_GUARD = 0.48  # keep partials under this fraction of the sample rate
TWO_PI = 2.0 * np.pi


def _times(start: int, n: int, sr: int) -> np.ndarray:
    return (start + np.arange(n, dtype=np.float64)) / sr  # [n] seconds


class Voice:
    """An endless signal with roughly unit RMS; `render(start, n)` -> float32 [n]."""

    sample_rate: int = SAMPLE_RATE
    gain: float = 1.0

    def _raw(self, start: int, n: int) -> np.ndarray:
        raise NotImplementedError

    def render(self, start: int, n: int) -> np.ndarray:
        return (self._raw(start, n) * self.gain).astype(np.float32)

    def _normalise(self) -> None:
        probe = self._raw(0, 2 * self.sample_rate)
        rms = float(np.sqrt(np.mean(probe**2)))
        self.gain = 1.0 / rms if rms > 1e-9 else 1.0


def _uniform(rng: np.random.Generator, pair: tuple[float, float]) -> float:
    lo, hi = pair
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


class _BurstGate:
    """Bursts at about `rate` per second, burst b starting at (b + 0.3 j_b) / rate, `length` s long."""

    def __init__(self, rate: float, length: float, decay: bool, rng: np.random.Generator) -> None:
        self.rate = rate
        self.length = min(length, 0.6 / rate)
        self.decay = decay
        self.jitter = rng.uniform(0.0, 0.3, _TABLE)
        self.amp = rng.uniform(0.7, 1.0, _TABLE)

    def __call__(self, t: np.ndarray) -> np.ndarray:
        b = np.floor(t * self.rate).astype(np.int64)  # [n] candidate burst index
        onset = (b + self.jitter[b % _TABLE]) / self.rate
        before = t < onset  # still in the tail of burst b - 1
        b = np.where(before, b - 1, b)
        onset = (b + self.jitter[b % _TABLE]) / self.rate
        tau = t - onset  # [n] seconds since the burst's onset, >= 0
        attack = np.clip(tau / 0.005, 0.0, 1.0)
        if self.decay:
            body = np.exp(-tau / (self.length / 3.0))
        else:
            body = np.sin(np.pi * np.clip(tau / self.length, 0.0, 1.0)) ** 0.5
        return np.where(tau < self.length, attack * body * self.amp[b % _TABLE], 0.0)


class HarmonicVoice(Voice):
    def __init__(self, spec: SoundSpec, rng: np.random.Generator, sr: int) -> None:
        self.sample_rate = sr
        self.f0 = _uniform(rng, spec.freq)
        self.vib_rate = max(_uniform(rng, spec.rate), 0.1)
        self.vib_depth = _uniform(rng, spec.depth)
        self.vib_phase = float(rng.uniform(0, TWO_PI))
        centre = spec.centre * 2.0 ** rng.uniform(-0.2, 0.2)
        ks = np.arange(1, spec.partials + 1)
        ks = ks[ks * self.f0 * (1 + self.vib_depth) < _NYQUIST_GUARD * sr]
        octaves = np.log2(ks * self.f0 / centre)
        self.ks = ks.astype(np.float64)
        self.amps = np.exp(-0.5 * (octaves / spec.width) ** 2) * rng.uniform(0.7, 1.0, len(ks))
        self.phases = rng.uniform(0, TWO_PI, len(ks))
        burst_rate = _uniform(rng, spec.bursts)
        is_bell = spec.bursts[1] > 0 and spec.centre > 1500
        self.gate = (
            _BurstGate(burst_rate, 0.55 / burst_rate if is_bell else 0.35 / burst_rate, is_bell, rng)
            if burst_rate > 0
            else None
        )
        self._normalise()

    def _raw(self, start: int, n: int) -> np.ndarray:
        t = _times(start, n, self.sample_rate)
        # phase of f(t) = f0 (1 + d sin(2 pi r t + p)), integrated analytically
        phase = TWO_PI * self.f0 * t - (self.f0 * self.vib_depth / self.vib_rate) * np.cos(
            TWO_PI * self.vib_rate * t + self.vib_phase
        )
        phase = (phase % TWO_PI).astype(np.float32)  # float32 trig is fast and precise enough here
        out = np.zeros(n, np.float32)
        for k, a, p in zip(self.ks, self.amps, self.phases):
            out += np.float32(a) * np.sin(np.float32(k) * phase + np.float32(p))
        out = out.astype(np.float64)
        if self.gate is not None:
            out *= self.gate(t)
        return out


def band_noise_loop(lo: float, hi: float, rng: np.random.Generator, sr: int, length: int = _LOOP) -> np.ndarray:
    """Periodic noise of `length` samples with energy between lo and hi Hz (soft edges), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(length))  # [length // 2 + 1]
    freqs = np.fft.rfftfreq(length, 1.0 / sr)
    edge = 0.15 * (hi - lo)
    rise = np.clip((freqs - (lo - edge)) / (2 * edge), 0.0, 1.0)
    fall = np.clip(((hi + edge) - freqs) / (2 * edge), 0.0, 1.0)
    shaped = np.fft.irfft(spectrum * np.sin(0.5 * np.pi * rise) * np.sin(0.5 * np.pi * fall), length)
    return shaped / (np.sqrt(np.mean(shaped**2)) + 1e-12)


def coloured_noise_loop(alpha: float, rng: np.random.Generator, length: int = _LOOP) -> np.ndarray:
    """Periodic 1/f^alpha noise (0 white, 1 pink, 2 brown) of `length` samples, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    shaped = np.fft.irfft(spectrum / f ** (alpha / 2.0), length)
    shaped -= shaped.mean()
    return shaped / (np.sqrt(np.mean(shaped**2)) + 1e-12)


class LoopVoice(Voice):
    """A periodic noise buffer, optionally amplitude-modulated."""

    def __init__(self, loop: np.ndarray, am_rate: float, am_depth: float, rng: np.random.Generator, sr: int) -> None:
        self.sample_rate = sr
        self.loop = loop
        self.offset = int(rng.integers(0, len(loop)))
        self.am_rate = am_rate
        self.am_depth = am_depth
        self.am_phase = float(rng.uniform(0, TWO_PI))
        self._normalise()

    def _raw(self, start: int, n: int) -> np.ndarray:
        index = (self.offset + start + np.arange(n)) % len(self.loop)
        out = self.loop[index]
        if self.am_depth > 0:
            t = _times(start, n, self.sample_rate)
            out = out * (1.0 + self.am_depth * np.sin(TWO_PI * self.am_rate * t + self.am_phase))
        return out


class PulsesVoice(Voice):
    """Decaying resonant clicks, click k at (k + 0.25 j_k) / rate."""

    def __init__(self, spec: SoundSpec, rng: np.random.Generator, sr: int) -> None:
        self.sample_rate = sr
        self.rate = _uniform(rng, spec.rate)
        self.freq = _uniform(rng, spec.freq)
        self.decay = _uniform(rng, spec.decay)
        self.jitter = rng.uniform(0.0, 0.25, _TABLE)
        self.amp = rng.uniform(0.7, 1.0, _TABLE)
        self.click_len = int(6 * self.decay * sr)
        tau = np.arange(self.click_len) / sr
        # a small downward pitch glide makes low clicks drum-like; harmless on high ones
        glide = self.freq * (1.0 + 0.5 * np.exp(-tau / 0.02))
        phase = TWO_PI * np.cumsum(glide) / sr
        self.click = np.sin(phase) * np.exp(-tau / self.decay) * np.clip(tau / 0.001, 0.0, 1.0)
        self._normalise()

    def _raw(self, start: int, n: int) -> np.ndarray:
        sr = self.sample_rate
        out = np.zeros(n)
        first = int(np.floor((start - self.click_len) / sr * self.rate)) - 1
        last = int(np.ceil((start + n) / sr * self.rate)) + 1
        for k in range(max(first, -1), last + 1):
            onset = int(round((k + self.jitter[k % _TABLE]) / self.rate * sr))
            lo, hi = max(onset, start), min(onset + self.click_len, start + n)
            if lo < hi:
                out[lo - start : hi - start] += self.amp[k % _TABLE] * self.click[lo - onset : hi - onset]
        return out


class FMVoice(Voice):
    def __init__(self, spec: SoundSpec, rng: np.random.Generator, sr: int) -> None:
        self.sample_rate = sr
        self.fc = _uniform(rng, spec.freq)
        self.rate = _uniform(rng, spec.rate)
        self.depth = _uniform(rng, spec.depth)
        self.phase0 = float(rng.uniform(0, TWO_PI))
        ks = np.arange(1, spec.partials + 1)
        ks = ks[ks * self.fc * (1 + self.depth) < _NYQUIST_GUARD * sr]
        self.ks = ks.astype(np.float64)
        self.amps = ks ** -1.2 * rng.uniform(0.7, 1.0, len(ks))
        self._normalise()

    def _raw(self, start: int, n: int) -> np.ndarray:
        t = _times(start, n, self.sample_rate)
        phase = TWO_PI * self.fc * t - (self.fc * self.depth / self.rate) * np.cos(TWO_PI * self.rate * t + self.phase0)
        phase = (phase % TWO_PI).astype(np.float32)
        out = np.zeros(n, np.float32)
        for k, a in zip(self.ks, self.amps):
            out += np.float32(a) * np.sin(np.float32(k) * phase)
        return out.astype(np.float64)


class ChirpsVoice(Voice):
    """Exponential up-sweeps, one per period, each lasting `duty` of the period, sin^2 windowed."""

    def __init__(self, spec: SoundSpec, rng: np.random.Generator, sr: int) -> None:
        self.sample_rate = sr
        lo, hi = spec.freq
        self.f_start = float(rng.uniform(lo, lo * 1.15))
        self.f_end = float(rng.uniform(hi * 0.85, hi))
        self.rate = _uniform(rng, spec.rate)
        self.sweep = spec.duty / self.rate  # seconds
        self.amp = rng.uniform(0.6, 1.0, _TABLE)
        self._normalise()

    def _raw(self, start: int, n: int) -> np.ndarray:
        t = _times(start, n, self.sample_rate)
        k = np.floor(t * self.rate).astype(np.int64)
        tau = t - k / self.rate  # seconds into the current period
        ratio = self.f_end / self.f_start
        u = np.clip(tau / self.sweep, 0.0, 1.0)
        phase = TWO_PI * self.f_start * self.sweep / np.log(ratio) * (ratio**u - 1.0)
        window = np.where(tau < self.sweep, np.sin(np.pi * u) ** 2, 0.0)
        return np.sin(phase) * window * self.amp[k % _TABLE]


def make_voice(spec: SoundSpec, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> Voice:
    """A voice with this instance's own parameters drawn from `spec`'s ranges."""
    if spec.kind == "harmonic":
        return HarmonicVoice(spec, rng, sr)
    if spec.kind == "noise":
        lo, hi = spec.freq
        width = hi - lo
        lo_i = lo + float(rng.uniform(-0.05, 0.05)) * width
        hi_i = hi + float(rng.uniform(-0.05, 0.05)) * width
        loop = band_noise_loop(lo_i, min(hi_i, _NYQUIST_GUARD * sr), rng, sr)
        return LoopVoice(loop, _uniform(rng, spec.rate), _uniform(rng, spec.depth), rng, sr)
    if spec.kind == "pulses":
        return PulsesVoice(spec, rng, sr)
    if spec.kind == "fm":
        return FMVoice(spec, rng, sr)
    if spec.kind == "chirps":
        return ChirpsVoice(spec, rng, sr)
    raise ValueError(f"unknown sound kind {spec.kind!r}")


def make_background_noise(rng: np.random.Generator, sr: int = SAMPLE_RATE) -> LoopVoice:
    """Room noise: white, pink or brown, chosen per clip."""
    alpha = float(rng.choice([0.0, 1.0, 2.0]))
    return LoopVoice(coloured_noise_loop(alpha, rng), 0.0, 0.0, rng, sr)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dB full scale (a full-scale sine reads -3 dB)."""
    return float(20.0 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-12))


def wav_bytes(samples: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV of float samples in [-1, 1] (clipped), byte-identical for equal input."""
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sr)
        handle.writeframes(pcm.tobytes())
    return buffer.getvalue()


def read_wav(path_or_bytes) -> tuple[np.ndarray, int]:
    """float32 samples in [-1, 1] and the sample rate of a 16-bit mono WAV (file path or bytes)."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb")
    with source, wave.open(source, "rb") as handle:
        sr = handle.getframerate()
        data = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return (data.astype(np.float32) / 32767.0), sr

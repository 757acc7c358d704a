"""The audio encoder interface the DDAVS network uses, and its factory.

    encoder = build_audio_encoder(model_cfg)
    tokens = encoder(waveform)          # [B, S] float32 in [-1, 1] at model_cfg.sample_rate -> [B, L, d]
    clip = encoder.pool(tokens)         # [B, d]: one embedding per clip (the prototype bank's unit)

Every encoder holds its own log-mel front-end (ddavs_rt.model.frontend.LogMel), so raw audio
goes into the graph; it resamples from the model's rate to the encoder's rate when they differ.
`num_tokens` (L) is fixed for a given window length, which keeps exported graphs static.
"""

from __future__ import annotations

from torch import Tensor, nn

from ddavs_rt.config import HTSATConfig, ModelConfig, SmallAudioConfig, VGGishConfig
from ddavs_rt.errors import ConfigError


class AudioEncoder(nn.Module):
    """Base class: waveform [B, S] -> tokens [B, L, out_dim]; `pool` -> [B, out_dim]."""

    kind: str = ""
    out_dim: int
    num_tokens: int

    def forward(self, waveform: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def pool(self, tokens: Tensor) -> Tensor:
        """Mean over tokens: [B, L, d] -> [B, d]."""
        return tokens.mean(dim=1)


def build_audio_encoder(cfg: ModelConfig) -> AudioEncoder:
    """The audio encoder named by `cfg.audio.kind`, for windows of `cfg.window_samples` samples."""
    audio = cfg.audio
    if isinstance(audio, SmallAudioConfig):
        from ddavs_rt.model.small_audio import SmallAudioEncoder

        return SmallAudioEncoder(audio, cfg.sample_rate, cfg.window_samples)
    if isinstance(audio, VGGishConfig):
        from ddavs_rt.model.vggish import VGGishEncoder

        return VGGishEncoder(audio, cfg.sample_rate, cfg.window_samples)
    if isinstance(audio, HTSATConfig):
        from ddavs_rt.model.htsat import HTSATEncoder

        return HTSATEncoder(audio, cfg.sample_rate, cfg.window_samples)
    raise ConfigError(f"audio.kind {getattr(audio, 'kind', audio)!r} is not an audio encoder; use htsat, vggish or small")

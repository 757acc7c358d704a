"""What the DDESeg and SDAVS variants share with DDAVS: the engine contract's input side.

`VariantBase` holds the in-graph frame pre-processing (uint8 RGB [B, H, W, 3] -> normalised
[B, 3, S, S]), the final resize to the frame size, and the attributes the trainer, bank and
model-info code look for on every model (`cfg`, `audio_encoder`, `com`, `bank_buffer`).
"""

from __future__ import annotations

from torch import Tensor, nn

from ddavs_rt.config import ModelConfig
from ddavs_rt.model.frames import FramePreprocess, to_frame_size



class VariantBase(nn.Module):
    """Base of the comparison variants; subclasses set `audio_encoder` and implement `logits_at`."""

    com: nn.Module | None = None  # COM belongs to DDAVS only
    audio_encoder: nn.Module

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frames = FramePreprocess(cfg.input_size)

    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] RGB -> normalised float [B, 3, S, S] at cfg.input_size."""
        return self.frames(frames)

    def audio_queries(self, audio: Tensor) -> Tensor:
        """audio [B, S] -> the audio encoder's tokens [B, L, d] (the variants have no AQM)."""
        return self.audio_encoder(audio)

    @staticmethod
    def to_frame_size(logits: Tensor, frames: Tensor) -> Tensor:
        """[B, K, h, w] -> [B, K, H, W] of the input frames."""
        return to_frame_size(logits, frames)

    @property
    def bank_buffer(self) -> Tensor | None:
        return None

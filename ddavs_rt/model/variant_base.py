"""What the DDESeg and SDAVS variants share with DDAVS: the engine contract's input side.

`VariantBase` holds the in-graph frame pre-processing (uint8 RGB [B, H, W, 3] -> normalised
[B, 3, S, S]), the final resize to the frame size, and the attributes the trainer, bank and
model-info code look for on every model (`cfg`, `audio_encoder`, `com`, `bank_buffer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VariantBase(nn.Module):
    """Base of the comparison variants; subclasses set `audio_encoder` and implement `logits_at`."""

    com: nn.Module | None = None  # COM belongs to DDAVS only
    audio_encoder: nn.Module

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] RGB -> normalised float [B, 3, S, S] at cfg.input_size."""
        x = frames.permute(0, 3, 1, 2).to(torch.float32)  # [B, H, W, 3] -> [B, 3, H, W]
        size = self.cfg.input_size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std

    def audio_queries(self, audio: Tensor) -> Tensor:
        """audio [B, S] -> the audio encoder's tokens [B, L, d] (the variants have no AQM)."""
        return self.audio_encoder(audio)

    @staticmethod
    def to_frame_size(logits: Tensor, frames: Tensor) -> Tensor:
        """[B, K, h, w] -> [B, K, H, W] of the input frames."""
        return F.interpolate(logits, size=(frames.shape[1], frames.shape[2]), mode="bilinear", align_corners=False)

    @property
    def bank_buffer(self) -> Tensor | None:
        return None

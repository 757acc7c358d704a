"""The engine contract's input side, shared by every network (DDAVS, DDESeg, SDAVS):
uint8 RGB frames [B, H, W, 3] -> normalised [B, 3, S, S] inside the graph, and logits back to
the frames' size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FramePreprocess(nn.Module):
    """uint8 [B, H, W, 3] RGB -> ImageNet-normalised float [B, 3, size, size] (bilinear resize)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        # Cast first: a permute of the uint8 input would leave a uint8 Transpose output inside the
        # exported graph, which TensorRT's ONNX parser refuses (uint8 only as graph input/output).
        # The buffers' dtype: float32, or float16 in a .half() model.
        x = frames.to(self.pixel_mean.dtype).permute(0, 3, 1, 2)  # [B, H, W, 3] -> [B, 3, H, W]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.pixel_mean) / self.pixel_std


def to_frame_size(logits: Tensor, frames: Tensor) -> Tensor:
    """logits [B, K, h, w] -> [B, K, H, W] of the input frames [B, H, W, 3] (bilinear)."""
    return F.interpolate(logits, size=(frames.shape[1], frames.shape[2]), mode="bilinear", align_corners=False)

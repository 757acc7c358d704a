"""SegFormer's all-MLP decoder: four stage features -> mask logits at 1/4 resolution.

Per stage a linear layer maps C_i to `hidden_dim`; every map is upsampled (bilinear) to the
stride-4 map's size; the four are concatenated (deepest first, as in SegFormer), fused by a
1x1 conv + BatchNorm + ReLU, dropped out, and a 1x1 conv gives K = num_classes logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import DecoderConfig


class MLPDecoder(nn.Module):
    def __init__(self, in_dims: tuple[int, ...], cfg: DecoderConfig) -> None:
        super().__init__()
        hidden = cfg.hidden_dim
        self.linear = nn.ModuleList(nn.Linear(dim, hidden) for dim in in_dims)
        self.fuse = nn.Conv2d(hidden * len(in_dims), hidden, kernel_size=1, bias=False)
        self.fuse_norm = nn.BatchNorm2d(hidden)
        self.dropout = nn.Dropout2d(cfg.dropout)
        self.classifier = nn.Conv2d(hidden, cfg.num_classes, kernel_size=1)

    def forward(self, features: list[Tensor]) -> Tensor:
        """[B, C_i, h_i, w_i] for the four stages -> logits [B, K, h_1, w_1]."""
        size = features[0].shape[2:]
        maps = []
        for feature, linear in zip(features, self.linear):
            b, _, h, w = feature.shape
            x = linear(feature.flatten(2).transpose(1, 2))  # [B, h*w, C_i] -> [B, h*w, hidden]
            x = x.transpose(1, 2).reshape(b, -1, h, w)  # -> [B, hidden, h, w]
            if (h, w) != tuple(size):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            maps.append(x)
        x = torch.cat(maps[::-1], dim=1)  # [B, 4*hidden, h_1, w_1], deepest first
        x = F.relu(self.fuse_norm(self.fuse(x)))
        return self.classifier(self.dropout(x))

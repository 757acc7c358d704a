"""A small convolutional audio encoder for the CPU.

log-mel [B, 1, T, 64] -> BatchNorm over mel bins -> stages of (conv 3x3 stride 2, conv 3x3),
the first stage without the second conv; each conv followed by BN + ReLU -> mean over frequency -> linear to `dim` -> + learned
positional embedding -> LayerNorm: tokens [B, T', dim] over time (T' = 13 for 1 s at 16 kHz
with the default three stages).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ddavs_rt.config import SmallAudioConfig
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.audio_encoder import AudioEncoder
from ddavs_rt.model.frontend import LogMel


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallAudioEncoder(AudioEncoder):
    kind = "small"

    def __init__(self, cfg: SmallAudioConfig, input_rate: int, window_samples: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.dim
        self.frontend = LogMel(cfg.frontend, input_rate)
        frames = self.frontend.num_frames(window_samples)
        if frames < 2 ** len(cfg.channels):
            raise ConfigError(
                f"window of {window_samples} samples gives {frames} frames, too few for "
                f"{len(cfg.channels)} stride-2 stages; use a longer window_seconds or fewer audio.channels"
            )
        self.bn0 = nn.BatchNorm2d(cfg.frontend.n_mels)  # normalises each mel bin
        stages: list[nn.Module] = []
        cin = 1
        for i, cout in enumerate(cfg.channels):
            layers = [_conv_bn_relu(cin, cout, 2)]
            if i > 0:  # the first stage runs at full resolution: one conv keeps it cheap
                layers.append(_conv_bn_relu(cout, cout, 1))
            stages.append(nn.Sequential(*layers))
            cin = cout
            frames = (frames - 1) // 2 + 1  # conv k3 s2 p1
        self.stages = nn.Sequential(*stages)
        self.num_tokens = frames
        self.proj = nn.Linear(cin, cfg.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, frames, cfg.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, waveform: Tensor) -> Tensor:
        x = self.frontend(waveform)  # [B, 1, T, M]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BN over the M mel bins
        x = self.stages(x)  # [B, C, T', M']
        x = x.mean(dim=3).transpose(1, 2)  # [B, T', C]
        x = self.proj(x) + self.pos_embed  # [B, T', dim]
        return self.norm(x)

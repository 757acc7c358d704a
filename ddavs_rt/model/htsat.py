"""HTS-AT: a Swin Transformer over the log-mel spectrogram folded into a 256 x 256 image.

Data flow (public configuration, AVS_FACTS.md "Audio front-ends"):
  waveform [B, S] at the model rate -> LogMel at 32 kHz (64 slaney mel bands, dB) [B, 1, T, 64]
  -> bn0 over the 64 mel bins -> time resized to 1024 frames (bicubic) -> folded into
  [B, 1, 256, 256] (freq_ratio 4: four 256-frame chunks stacked along frequency)
  -> patch embed 4x4 -> 64 x 64 tokens x 96 -> four Swin stages (depths 2, 2, 6, 2; window 8;
  patch merging between stages) -> 8 x 8 tokens x 768 -> LayerNorm
  -> tokens [B, 64, 768] re-ordered as (2 frequency rows) x (32 time steps), the layout the
  official token-semantic head reads; pool = mean over tokens (the official `latent_output`).

Module names follow the official code so that its checkpoint keys (prefix `sed_model.` removed)
load directly: `bn0`, `patch_embed.proj/norm`, `layers.{i}.blocks.{j}.{norm1, attn.qkv,
attn.proj, attn.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}`,
`layers.{i}.downsample.{reduction, norm}`, `norm`. The tscam head (`tscam_conv`, `head`) is not
part of this encoder: the loader checks its shapes and skips it.

All shapes are static given the fixed 256 x 256 image; window partition, the cyclic shift and
its attention mask are plain reshapes, rolls and constant buffers, so the graph exports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import HTSATConfig
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.audio_encoder import AudioEncoder
from ddavs_rt.model.frontend import LogMel
from ddavs_rt.model.layers import DropPath


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def window_partition(x: Tensor, window: int) -> Tensor:
    """[B, H, W, C] -> [B * nW, window * window, C] (static reshapes, batch left as -1)."""
    _, h, w, c = x.shape
    x = x.reshape(-1, h // window, window, w // window, window, c)  # [B, H/w, w, W/w, w, C]
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """[B * nW, window * window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // window, w // window, window, window, c)  # [B, H/w, W/w, w, w, C]
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> Tensor:
    """[w*w, w*w] index into the (2w-1)^2 bias table for each pair of positions in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)  # [2, w*w]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # [w*w, w*w, 2]
    rel = rel + (window - 1)  # shift to start at 0
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """[nW, w*w, w*w] additive mask: -100 between positions from different regions after the roll."""
    region = torch.zeros(1, h, w, 1)
    label = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            region[:, hs, ws, :] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)  # [nW, w*w]
    diff = ids[:, None, :] - ids[:, :, None]  # [nW, w*w, w*w]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        n, c = x.shape[1], x.shape[2]  # x: [B * nW, N, C]
        qkv = self.qkv(x).reshape(-1, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each [B * nW, heads, N, C / heads]
        attn = (q * self.scale) @ k.transpose(-2, -1)  # [B * nW, heads, N, N]
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, self.heads).permute(2, 0, 1)[None]  # + [1, heads, N, N]
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(-1, nw, self.heads, n, n) + mask[None, :, None]  # [B, nW, heads, N, N]
            attn = attn.reshape(-1, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(-1, n, c)  # [B * nW, N, C]
        return self.proj(out)


class SwinBlock(nn.Module):
    """(Shifted) window attention and an MLP, each pre-norm with a residual."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int,
                 mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        if resolution <= window:  # one window covers the map: no shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = shifted_window_mask(resolution, resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        r, c = self.resolution, x.shape[-1]  # x: [B, r*r, C]
        h = self.norm1(x).reshape(-1, r, r, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        h = self.attn(window_partition(h, self.window), self.attn_mask)  # [B * nW, w*w, C]
        h = window_reverse(h, self.window, r, r)  # [B, r, r, C]
        if self.shift:
            h = torch.roll(h, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(h.reshape(-1, r * r, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (4C), normalised, reduced to 2C: [B, r*r, C] -> [B, r*r/4, 2C]."""

    def __init__(self, dim: int, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        r, c = self.resolution, x.shape[-1]
        x = x.reshape(-1, r, r, c)
        # order as in Swin: (even, even), (odd, even), (even, odd), (odd, odd)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        x = x.reshape(-1, (r // 2) * (r // 2), 4 * c)  # [B, r*r/4, 4C]
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int,
                 mlp_ratio: float, drop_paths: list[float], downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if j % 2 == 0 else window // 2, mlp_ratio, drop_paths[j])
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    """[B, 1, 256, 256] -> [B, 64 * 64, embed_dim] with a 4x4 stride-4 conv and LayerNorm."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def bicubic_time_stretch(frames: int, target: int) -> torch.Tensor:
    """[target, frames]: F.interpolate(x, size=(target, M), mode="bicubic", align_corners=True) on
    x [B, 1, frames, M] as a matrix over the time axis (the mel axis keeps its size, which with
    align_corners is the identity). Interpolation is linear in x, so interpolating the identity
    gives its matrix. A MatMul instead of a cubic Resize: TensorRT's ONNX parser takes Resize in
    nearest and linear modes only (onnx-tensorrt operators.md)."""
    eye = torch.eye(frames, dtype=torch.float32)[:, None, :, None]  # [frames, 1, frames, 1]: one basis vector each
    columns = F.interpolate(eye, size=(target, 1), mode="bicubic", align_corners=True)  # [frames, 1, target, 1]
    return columns[:, 0, :, 0].T.contiguous().to(torch.float32)  # [target, frames]


class HTSATEncoder(AudioEncoder):
    kind = "htsat"

    def __init__(self, cfg: HTSATConfig, input_rate: int, window_samples: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dim = cfg.out_dim
        stages = len(cfg.depths)
        grid = cfg.spec_size // cfg.patch_size // 2 ** (stages - 1)  # final token grid side (8)
        if cfg.spec_size % cfg.freq_ratio or cfg.spec_size // cfg.freq_ratio != cfg.frontend.n_mels:
            raise ConfigError(
                f"HTSAT folds {cfg.frontend.n_mels} mel bands x freq_ratio {cfg.freq_ratio} into a "
                f"{cfg.spec_size}-pixel image: need spec_size = n_mels x freq_ratio"
            )
        if grid < cfg.freq_ratio or grid % cfg.freq_ratio:
            raise ConfigError(f"HTSAT spec_size {cfg.spec_size} does not fit patch {cfg.patch_size} and {stages} stages")
        self.frontend = LogMel(cfg.frontend, input_rate)
        self.frames = self.frontend.num_frames(window_samples)
        target_t = cfg.spec_size * cfg.freq_ratio
        if self.frames != target_t:
            self.register_buffer("time_stretch", bicubic_time_stretch(self.frames, target_t), persistent=False)
        self.grid = grid
        self.num_tokens = grid * grid
        self.bn0 = nn.BatchNorm2d(cfg.frontend.n_mels)
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        rates = torch.linspace(0, cfg.drop_path, sum(cfg.depths)).tolist()
        self.layers = nn.ModuleList()
        resolution, dim, start = cfg.spec_size // cfg.patch_size, cfg.embed_dim, 0
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads)):
            if dim % heads:
                raise ConfigError(f"HTSAT stage {i + 1} width {dim} is not divisible by its {heads} heads")
            self.layers.append(SwinStage(
                dim, resolution, depth, heads, cfg.window_size, cfg.mlp_ratio,
                rates[start:start + depth], downsample=i < stages - 1,
            ))
            start += depth
            if i < stages - 1:
                resolution, dim = resolution // 2, dim * 2
        self.norm = nn.LayerNorm(dim)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def spectrogram_image(self, waveform: Tensor) -> Tensor:
        """waveform [B, S] -> the normalised log-mel folded into [B, 1, spec_size, spec_size]."""
        cfg = self.cfg
        x = self.frontend(waveform)  # [B, 1, T, M]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # BN over the M mel bins
        target_t = cfg.spec_size * cfg.freq_ratio  # 1024 frames
        if self.frames != target_t:  # official: F.interpolate(mode="bicubic", align_corners=True) over time
            x = torch.matmul(self.time_stretch.to(x.dtype), x)  # the same map as one MatMul
        m = x.shape[3]
        x = x.permute(0, 1, 3, 2)  # [B, 1, M, 1024]
        x = x.reshape(-1, 1, m, cfg.freq_ratio, target_t // cfg.freq_ratio)  # [B, 1, M, 4, 256]
        x = x.permute(0, 1, 3, 2, 4)  # [B, 1, 4, M, 256]: time chunks stacked along frequency
        return x.reshape(-1, 1, cfg.freq_ratio * m, target_t // cfg.freq_ratio)  # [B, 1, 256, 256]

    def forward(self, waveform: Tensor) -> Tensor:
        x = self.patch_embed(self.spectrogram_image(waveform))  # [B, 64*64, 96]
        for layer in self.layers:
            x = layer(x)  # ... -> [B, 8*8, 768]
        x = self.norm(x)
        g, r, c = self.grid, self.cfg.freq_ratio, x.shape[-1]
        # grid rows are r time chunks x (g / r) frequency rows: unfold the chunks back into time
        x = x.reshape(-1, r, g // r, g, c)  # [B, chunk, freq, time-in-chunk, C]
        x = x.permute(0, 2, 1, 3, 4)  # [B, freq, chunk, time-in-chunk, C]
        return x.reshape(-1, g * g, c)  # [B, (g/r) * (r*g) tokens: freq-major, time in order, C]

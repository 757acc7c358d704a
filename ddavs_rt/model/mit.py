"""Mix Transformer (SegFormer MiT-B0..B5), the visual encoder, written stage by stage.

Each of the four stages is: overlapping patch embedding (conv 7/3/3/3, stride 4/2/2/2) ->
transformer blocks (efficient self-attention with spatial reduction, Mix-FFN with a 3x3
depthwise conv) -> LayerNorm. A caller that wants to inject something between the patch
embedding and the blocks (DDAVS's cross alignment blocks) runs the stages itself:

    for stage in encoder.stages:
        tokens, (h, w) = stage.embed(x)          # [B, h*w, C]
        tokens = hook(tokens)                    # optional, e.g. a cross alignment block
        x = stage.transform(tokens, h, w)        # blocks + norm -> [B, C, h, w]

Module names follow the official mmseg checkpoints (`patch_embed.proj/norm`, `attn.q/kv/sr/norm/
proj`, `mlp.fc1/dwconv/fc2`, `norm`) so `official_mit.py` maps keys one to one:
`patch_embed{i}.*` -> `stages.{i-1}.patch_embed.*`, `block{i}.{j}.*` -> `stages.{i-1}.blocks.{j}.*`,
`norm{i}.*` -> `stages.{i-1}.norm.*`.

LayerNorm epsilons follow the config's `layernorm_eps`: "mmseg" is what mmseg's
mix_transformer.py (which trained the ImageNet `mit_bX.pth` weights) uses, 1e-5 in the patch
embedding norms and in the attention's spatial-reduction norm (plain nn.LayerNorm) and 1e-6 in the
blocks' norm1 / norm2 and the stage norms (its `norm_layer`); "legacy" is 1e-6 everywhere, what
checkpoints saved before the field existed were trained with (a config.json without the field).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import VisualEncoderConfig
from ddavs_rt.model.layers import DropPath

PATCH_KERNELS = (7, 3, 3, 3)
PATCH_STRIDES = (4, 2, 2, 2)


@dataclass(frozen=True)
class MiTNormEps:
    """LayerNorm epsilons of a MiT: patch embedding, attention's spatial reduction, blocks and stages."""

    patch_embed: float
    reduction: float
    block: float


MIT_NORM_EPS: dict[str, MiTNormEps] = {
    "mmseg": MiTNormEps(patch_embed=1e-5, reduction=1e-5, block=1e-6),
    "legacy": MiTNormEps(patch_embed=1e-6, reduction=1e-6, block=1e-6),
}


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows, then LayerNorm over channels."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int, eps: float) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        x = self.proj(x)  # [B, Cin, H, W] -> [B, C, h, w]
        h, w = x.shape[2], x.shape[3]
        tokens = x.flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
        return self.norm(tokens), (h, w)


class EfficientSelfAttention(nn.Module):
    """Self-attention whose keys/values come from a spatially reduced copy of the tokens."""

    def __init__(self, dim: int, heads: int, sr_ratio: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)  # [B, heads, N, c/heads]
        if self.sr_ratio > 1:
            # sequence reduction: [B, N, C] -> [B, C, h, w] -> conv stride r -> [B, N/r^2, C]
            grid = x.transpose(1, 2).reshape(b, c, h, w)
            reduced = self.sr(grid).flatten(2).transpose(1, 2)
            kv_in = self.norm(reduced)
        else:
            kv_in = x
        kv = self.kv(kv_in)  # [B, M, 2C]
        k, v = kv.split(c, dim=-1)
        k = k.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)  # [B, heads, M, c/heads]
        v = v.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, N, c/heads]
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (positional information) -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = self.fc1(x)  # [B, N, hidden]
        b, n, c = x.shape
        grid = x.transpose(1, 2).reshape(b, c, h, w)  # [B, hidden, h, w]
        x = self.dwconv(grid).flatten(2).transpose(1, 2)  # -> [B, N, hidden]
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x)), with stochastic depth."""

    def __init__(
        self, dim: int, heads: int, sr_ratio: int, mlp_ratio: float, drop_path: float, eps: MiTNormEps,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps.block)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio, eps.reduction)
        self.norm2 = nn.LayerNorm(dim, eps=eps.block)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MiTStage(nn.Module):
    """One stage: `embed` (patch embedding) then `transform` (blocks + norm)."""

    def __init__(
        self, in_channels: int, dim: int, kernel: int, stride: int, depth: int, heads: int,
        sr_ratio: int, mlp_ratio: float, drop_paths: list[float], eps: MiTNormEps,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, kernel, stride, eps.patch_embed)
        self.blocks = nn.ModuleList(
            MiTBlock(dim, heads, sr_ratio, mlp_ratio, drop_paths[j], eps) for j in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=eps.block)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """[B, Cin, H, W] -> tokens [B, h*w, C] and (h, w)."""
        return self.patch_embed(x)

    def transform(self, tokens: Tensor, h: int, w: int) -> Tensor:
        """tokens [B, h*w, C] -> blocks -> norm -> feature map [B, C, h, w]."""
        for block in self.blocks:
            tokens = block(tokens, h, w)
        tokens = self.norm(tokens)
        return tokens.transpose(1, 2).reshape(tokens.shape[0], self.dim, h, w)

    def forward(self, x: Tensor) -> Tensor:
        tokens, (h, w) = self.embed(x)
        return self.transform(tokens, h, w)


class MixTransformer(nn.Module):
    """Four MiT stages; `forward` returns the four feature maps at strides 4, 8, 16, 32."""

    def __init__(self, cfg: VisualEncoderConfig) -> None:
        super().__init__()
        dims = tuple(cfg.embed_dims)  # type: ignore[arg-type]
        depths = tuple(cfg.depths)  # type: ignore[arg-type]
        self.dims: tuple[int, ...] = dims
        self.norm_eps = MIT_NORM_EPS[cfg.layernorm_eps]
        total = sum(depths)
        rates = [cfg.drop_path * i / max(total - 1, 1) for i in range(total)]  # linear schedule
        stages = []
        start = 0
        in_channels = 3
        for i in range(4):
            stages.append(
                MiTStage(
                    in_channels, dims[i], PATCH_KERNELS[i], PATCH_STRIDES[i], depths[i],
                    cfg.num_heads[i], cfg.sr_ratios[i], cfg.mlp_ratio, rates[start:start + depths[i]],
                    self.norm_eps,
                )
            )
            start += depths[i]
            in_channels = dims[i]
        self.stages = nn.ModuleList(stages)

    def forward(self, images: Tensor) -> list[Tensor]:
        """images [B, 3, H, W] (normalised) -> [B, C_i, H/s_i, W/s_i] for s_i = 4, 8, 16, 32."""
        features = []
        x = images
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

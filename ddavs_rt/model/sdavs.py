"""SDAVS (Selective noise suppression and Discriminative mutual interaction) as a variant.

    E_1..E_4  = MiT(images)                                   strides 4, 8, 16, 32
    F_a       = audio_encoder(audio)                           tokens [B, L, d] -> [B, D, 1, L]
    decoder, deepest stage first (j = 1..4 on MiT stage i = 5 - j), width D = decoder.hidden_dim:
        F_v^j          = Conv(lateral_i(E_i) + Up(fused^{j-1}))          direct connection, eq. (8)
        F_v', F_a'     = SNRP_j(F_v^j, F_a^j)                           eqs. (1)-(3)
        F_av', F_va'   = DAMF_j(F_v', F_a')                             eqs. (4)-(7)
        fused^j        = Conv(F_av' + F_va');   F_a^{j+1} = F_a'
        skip^j         = Up_max(Conv(F_a' + fused^j))                    skip connection, eq. (8)
    logits = classifier(MLP(sum_j skip^j))                        eq. (9), at stride 4

Time: the paper's clips are [B, C, T, h, w] and STC uses depthwise 3D convolutions with kernels
(3, 3, 3) for queries and (1, 3, 3) for keys/values. The engine contract here is a batch of
independent frames (T = 1). A (3, 3, 3) kernel on a one-frame clip only ever multiplies its two
outer temporal taps with zero padding, so it is exactly a (1, 3, 3) kernel whose outer taps never
learn; every STC therefore uses a depthwise Conv3d with a (1, 3, 3) kernel on [B, C, 1, h, w],
which is the paper's operator restricted to T = 1 (and still exports as a 3-D convolution).

The 1-D audio tokens become a map by laying the L tokens along the width ([B, D, 1, L]) and
upsampling to each stage's size (the paper's "Conv(UpSample(F_a))"), so the spatial selector
has something spatial to select with. Keys/values of the attention are average-pooled by
`sdavs.kv_pool` per MiT stage (MiT's own reduction ratios) to keep stride-4 attention affordable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import ModelConfig, SDAVSConfig
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.layers import LN_EPS
from ddavs_rt.model.mit import MixTransformer
from ddavs_rt.model.variant_base import VariantBase


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SelectiveNoiseResilientProcessor(nn.Module):
    """SNRP: audio-driven channel (CFS) then spatial (SFS) selection of the visual features."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        self.audio_conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1)  # Conv(UpSample(F_a)), eq. (1)
        hidden = max(dim // reduction, 1)
        self.channel_gate = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        self.spatial_gate = nn.Conv2d(dim, 1, kernel_size=3, padding=1)  # eq. (3)

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """visual [B, D, h, w], audio map [B, D, h', w'] -> (F_v' [B, D, h, w], F_a' [B, D, h, w])."""
        size = visual.shape[2:]
        audio = self.audio_conv(F.interpolate(audio, size=size, mode="bilinear", align_corners=False))
        gate_c = torch.sigmoid(self.channel_gate(audio.mean(dim=(2, 3))))  # [B, D], eq. (1)
        visual = visual * gate_c[:, :, None, None]  # eq. (2)
        gate_s = torch.sigmoid(self.spatial_gate(audio))  # [B, 1, h, w], eq. (3)
        return visual * gate_s, audio


class ChannelRecalibration(nn.Module):
    """CAR, eq. (6): X * sigmoid(W2 ReLU(W1 GAP(X))) on [B, C, T, h, w]."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        hidden = max(dim // reduction, 1)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3, 4))))))  # [B, C]
        return x * weights[:, :, None, None, None]


class SpatialTemporalChannelEnhancer(nn.Module):
    """STC, eq. (5): depthwise Conv3d (1, 3, 3) -> pointwise to attn_dim -> CAR -> LN; tokens out."""

    def __init__(self, dim: int, attn_dim: int, reduction: int, pool: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv3d(dim, dim, kernel_size=(1, 3, 3), padding=(0, 1, 1), groups=dim)
        self.pointwise = nn.Conv3d(dim, attn_dim, kernel_size=1)
        self.car = ChannelRecalibration(attn_dim, reduction)
        self.norm = nn.LayerNorm(attn_dim, eps=LN_EPS)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        """[B, D, h, w] -> tokens [B, T*h'*w', attn_dim] (T = 1; h' = h / pool)."""
        clip = x.unsqueeze(2)  # [B, D, T=1, h, w]
        clip = self.pointwise(self.depthwise(clip))  # [B, A, 1, h, w]
        if self.pool > 1:
            # T = 1, so a 2-D pool of the one time step is the (1, pool, pool) 3-D pool; the CPU has
            # no fp16 avg_pool3d kernel, and the .half() path must run on the CPU too
            clip = F.avg_pool2d(clip.squeeze(2), self.pool).unsqueeze(2)  # [B, A, 1, h', w']
        clip = self.car(clip)
        return self.norm(clip.flatten(2).transpose(1, 2))


class CrossModalAttention(nn.Module):
    """Attn(STC_q(x), STC_k(y), STC_v(y)) back to the map of x: [B, D, h, w]."""

    def __init__(self, dim: int, cfg: SDAVSConfig, pool: int) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.stc_q = SpatialTemporalChannelEnhancer(dim, cfg.attn_dim, cfg.reduction, 1)
        self.stc_k = SpatialTemporalChannelEnhancer(dim, cfg.attn_dim, cfg.reduction, pool)
        self.stc_v = SpatialTemporalChannelEnhancer(dim, cfg.attn_dim, cfg.reduction, pool)
        self.proj = nn.Linear(cfg.attn_dim, dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        b, c, h, w = x.shape
        a = self.stc_q.norm.normalized_shape[0]
        d = a // self.heads
        q = self.stc_q(x).reshape(b, h * w, self.heads, d).transpose(1, 2)  # [B, heads, N, d]
        k = self.stc_k(y).reshape(b, -1, self.heads, d).transpose(1, 2)  # [B, heads, M, d]
        v = self.stc_v(y).reshape(b, -1, self.heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h * w, a)
        return self.proj(out).transpose(1, 2).reshape(b, c, h, w)


class MutualFusion(nn.Module):
    """DAMF: bidirectional STC attention (eq. 4) then residual multiplication (eq. 7)."""

    def __init__(self, dim: int, cfg: SDAVSConfig, pool: int) -> None:
        super().__init__()
        self.audio_to_visual = CrossModalAttention(dim, cfg, pool)  # visual queries, audio keys/values
        self.visual_to_audio = CrossModalAttention(dim, cfg, pool)  # audio queries, visual keys/values

    def forward(self, visual: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """F_v', F_a' [B, D, h, w] -> (F'_{a->v}, F'_{v->a}), each [B, D, h, w]."""
        a_to_v = self.audio_to_visual(visual, audio)
        v_to_a = self.visual_to_audio(audio, visual)
        return a_to_v * audio, v_to_a * visual  # eq. (7)


class SDAVSDecoderStage(nn.Module):
    """One of the four decoder stages: lateral + direct connection, SNRP, DAMF, fuse, skip."""

    def __init__(self, in_dim: int, dim: int, cfg: SDAVSConfig, pool: int) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(in_dim, dim, kernel_size=1)
        self.merge = conv_bn_relu(dim, dim)
        self.snrp = SelectiveNoiseResilientProcessor(dim, cfg.reduction)
        self.damf = MutualFusion(dim, cfg, pool)
        self.fuse = conv_bn_relu(dim, dim)
        self.skip = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, encoder_feature: Tensor, previous: Tensor | None, audio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> (fused [B, D, h, w], audio F_a' [B, D, h, w], skip [B, D, h, w])."""
        x = self.lateral(encoder_feature)
        if previous is not None:
            x = x + F.interpolate(previous, size=x.shape[2:], mode="bilinear", align_corners=False)
        visual, audio = self.snrp(self.merge(x), audio)
        a_to_v, v_to_a = self.damf(visual, audio)
        fused = self.fuse(a_to_v + v_to_a)
        return fused, audio, self.skip(audio + fused)


class SDAVSDecoder(nn.Module):
    """Multi-scale fusion decoder with direct and skip connections, eqs. (8)-(9)."""

    def __init__(self, in_dims: tuple[int, ...], audio_dim: int, cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.decoder.hidden_dim
        self.audio_proj = nn.Linear(audio_dim, dim)
        # stages run deepest first: MiT stage 4, 3, 2, 1
        self.stages = nn.ModuleList(
            SDAVSDecoderStage(in_dims[i], dim, cfg.sdavs, cfg.sdavs.kv_pool[i]) for i in (3, 2, 1, 0)
        )
        self.mlp = conv_bn_relu(dim, dim, kernel=1)
        self.dropout = nn.Dropout2d(cfg.decoder.dropout)
        self.classifier = nn.Conv2d(dim, cfg.decoder.num_classes, kernel_size=1)  # FC, eq. (9)

    def forward(self, features: list[Tensor], tokens: Tensor) -> Tensor:
        """four maps [B, C_i, h_i, w_i], audio tokens [B, L, d] -> logits [B, K, h_1, w_1]."""
        audio = self.audio_proj(tokens).transpose(1, 2).unsqueeze(2)  # [B, D, 1, L]
        size = features[0].shape[2:]
        previous = None
        total = None
        for stage, feature in zip(self.stages, features[::-1]):
            previous, audio, skip = stage(feature, previous, audio)
            skip = F.interpolate(skip, size=size, mode="bilinear", align_corners=False)  # Up_max
            total = skip if total is None else total + skip
        return self.classifier(self.dropout(self.mlp(total)))


class SDAVS(VariantBase):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.visual = MixTransformer(cfg.visual)
        self.audio_encoder = build_audio_encoder(cfg)
        self.decoder = SDAVSDecoder(self.visual.dims, self.audio_encoder.out_dim, cfg)

    def segment(self, images: Tensor, tokens: Tensor) -> Tensor:
        """images [B, 3, S, S], audio tokens [B, L, d] -> logits [B, K, S/4, S/4]."""
        return self.decoder(self.visual(images), tokens)

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        """frames uint8 [B, H, W, 3], audio float32 [B, S] -> logits float32 [B, K, H, W]."""
        return self.to_frame_size(self.segment(self.preprocess(frames), self.audio_encoder(audio)), frames)

    def forward_train(self, frames: Tensor, audio: Tensor, audio_aug: Tensor | None = None) -> dict[str, Tensor | None]:
        """{"logits" [B, K, H, W], "queries" (the audio tokens [B, L, d]), "con_loss": None}."""
        tokens = self.audio_encoder(audio)
        logits = self.to_frame_size(self.segment(self.preprocess(frames), tokens), frames)
        return {"logits": logits, "queries": tokens, "con_loss": None}

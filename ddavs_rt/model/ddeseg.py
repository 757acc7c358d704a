"""DDESeg (Dynamic Derivation and Elimination, CVPR 2025) as a variant of this framework.

    F_a   = pool(audio_encoder(audio))                         [B, d], the bank's feature space
    A^1   = DDM(F_a, memory)                                   eqs. (5)-(12): K derived reps [B, K, d]
    per MiT stage l = 1..4:
        tokens = patch_embed_l(V^{l-1})
        A^l    = DEM_l(A^{l-1}, V^{l-1})   (l > 1)             eqs. (13)-(17): weaken unmatched reps
        tokens = FusionBlock_l(tokens, A^l)                    sec. 3.3 / Fig. 4
        V^l    = blocks_l(tokens)                              MiT self-attention + Mix-FFN
    logits = decoder(V^1..4)                                   the shared all-MLP head

Semantic memory (Step 1) is the project's bank file (`ddavs-rt build-bank`): P = C x (k m)
prototypes stored class by class. The class centre mu^c (eq. 2) is the mean of the class's k m
prototypes, and its representative features x_rep^c (eq. 4) are the prototypes themselves. Both
come from the one non-persistent buffer `memory.prototypes` [P, d], so `attach_bank` fills it and
the centres follow in the graph (no gradient ever reaches it).

Choices where the paper is not explicit (stated here so they can be checked):
- F_a is the pooled clip embedding, the same feature the bank holds, so distances to mu^c mean
  something.
- Step 3 (eqs. 9-12): the edge weights of eq. (10) are a softmax over all k m representative
  features of the class (the paper's j index over clusters and m features is folded into one), so
  each derived representation gets one offset.
- Eq. (14) "C_v = O C_v" is read as the soft-cluster means of the visual tokens:
  C_v' = (O^T V) / sum_n O; Gumbel noise only while training, plain softmax in eval.
- Fusion (Fig. 4): one fusion block before each MiT stage's blocks: derived audio queries attend
  to the (spatially reduced) visual tokens, the visual tokens read the fused audio back; the
  stage's own MiT blocks are the block's self-attention and FFN. The paper stacks 3/6/40/3
  fusion blocks; here cross-modal attention happens once per stage (see the report / configs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import DDESegConfig, ModelConfig
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.layers import LN_EPS, FeedForward, MultiHeadAttention, attention_heads
from ddavs_rt.model.decoder import MLPDecoder
from ddavs_rt.model.mit import MixTransformer
from ddavs_rt.model.variant_base import VariantBase


class SemanticMemory(nn.Module):
    """The bank as DDESeg's memory: prototypes [P, d] -> centres [C, d], representatives [C, km, d]."""

    def __init__(self, num_prototypes: int, per_class: int, dim: int) -> None:
        super().__init__()
        self.per_class = per_class
        self.num_classes = num_prototypes // per_class
        self.register_buffer("prototypes", torch.zeros(num_prototypes, dim), persistent=False)  # [P, d]

    def representatives(self) -> Tensor:
        """[C, km, d]: the bank's prototypes, class by class."""
        return self.prototypes.reshape(self.num_classes, self.per_class, -1)

    def centres(self) -> Tensor:
        """[C, d]: eq. (2), the mean of each class's prototypes."""
        return self.representatives().mean(dim=1)


class DynamicDerivation(nn.Module):
    """DDM steps 2-3: F_a [B, d] -> K derived, intra-class enhanced representations [B, K, d]."""

    def __init__(self, dim: int, num_derived: int) -> None:
        super().__init__()
        self.num_derived = num_derived
        self.edge = nn.Linear(dim, dim)  # W_e, b_e, eq. (5)
        self.edge_weight = nn.Linear(dim, 1, bias=False)  # W_f1, eq. (6)
        self.compensation = nn.Linear(dim, dim)  # W_o1, b_o1, eq. (7)
        self.intra_edge = nn.Linear(dim, dim)  # W_d, b_d, eq. (9)
        self.intra_weight = nn.Linear(dim, 1, bias=False)  # W_f2, eq. (10)
        self.offset = nn.Linear(dim, dim)  # W_o2, b_o2, eq. (11)

    def nearest_classes(self, feature: Tensor, centres: Tensor) -> Tensor:
        """Indices [B, K] of the K class centres nearest (Euclidean) to each F_a."""
        # squared Euclidean distance (same order as the distance), written out for the exporters
        distances = (
            (feature * feature).sum(dim=1, keepdim=True)
            - 2.0 * torch.matmul(feature, centres.transpose(0, 1))
            + (centres * centres).sum(dim=1).unsqueeze(0)
        )  # [B, C]
        return torch.topk(distances, self.num_derived, dim=1, largest=False).indices

    def forward(self, feature: Tensor, memory: SemanticMemory) -> tuple[Tensor, Tensor]:
        """F_a [B, d] -> (A_hat [B, K, d], class indices [B, K])."""
        centres = memory.centres()  # [C, d]
        index = self.nearest_classes(feature, centres)  # [B, K]
        near = centres[index]  # [B, K, d]
        f = feature.unsqueeze(1)  # [B, 1, d]
        # step 2: inter-class derivation
        edges = F.gelu(self.edge(near - f))  # e_u, eq. (5): [B, K, d]
        weights = torch.softmax(self.edge_weight(edges), dim=1)  # w_u over the K centres: [B, K, 1]
        derived = f + torch.tanh(self.compensation(f + weights * edges))  # eqs. (6)-(8): a_i [B, K, d]
        # step 3: intra-class discriminative enhancement against the class's representatives
        reps = memory.representatives()[index]  # [B, K, km, d]
        intra = F.gelu(self.intra_edge(reps - derived.unsqueeze(2)))  # e_c, eq. (9): [B, K, km, d]
        intra_w = torch.softmax(self.intra_weight(intra), dim=2)  # eq. (10): [B, K, km, 1]
        pooled = (intra_w * intra).sum(dim=2)  # weighted edge feature [B, K, d]
        delta = torch.tanh(self.offset(pooled))  # eq. (11)
        return derived * (1.0 + delta), index  # eq. (12): scaling keeps the class's semantics


class DynamicElimination(nn.Module):
    """DEM: soft-cluster visual tokens into K centres, score each audio rep against them, scale."""

    def __init__(self, audio_dim: int, visual_dim: int, num_centres: int, heads: int, tau: float) -> None:
        super().__init__()
        self.visual_proj = nn.Linear(visual_dim, audio_dim)  # V [HW, C] -> [HW, d]
        self.norm_v = nn.LayerNorm(audio_dim, eps=LN_EPS)
        self.centres = nn.Parameter(torch.randn(num_centres, audio_dim) / math.sqrt(audio_dim))  # C_v [K, d]
        self.tau = tau
        self.norm_a = nn.LayerNorm(audio_dim, eps=LN_EPS)
        self.norm_c = nn.LayerNorm(audio_dim, eps=LN_EPS)
        self.cross = MultiHeadAttention(audio_dim, heads)  # MCA, eq. (15)
        self.score = nn.Sequential(nn.Linear(audio_dim, audio_dim // 2), nn.GELU(), nn.Linear(audio_dim // 2, 1))

    def assignment(self, visual: Tensor) -> Tensor:
        """Eq. (13): visual tokens [B, N, d] -> O [B, N, K]; Gumbel noise only while training."""
        logits = torch.matmul(visual, self.centres.transpose(0, 1))  # [B, N, K]
        if self.training:
            uniform = torch.rand_like(logits).clamp(1e-6, 1.0 - 1e-6)
            logits = logits - torch.log(-torch.log(uniform))  # + Gumbel(0, 1)
        return torch.softmax(logits / self.tau, dim=-1)

    def visual_centres(self, feature: Tensor) -> Tensor:
        """Feature map [B, C, h, w] -> soft-cluster centres C_v' [B, K, d] (eq. 14)."""
        tokens = self.norm_v(self.visual_proj(feature.flatten(2).transpose(1, 2)))  # [B, N, d]
        assign = self.assignment(tokens)  # [B, N, K]
        mass = assign.sum(dim=1).unsqueeze(-1) + 1e-6  # [B, K, 1]
        return torch.matmul(assign.transpose(1, 2), tokens) / mass  # [B, K, d]

    def scores(self, audio: Tensor, feature: Tensor) -> Tensor:
        """Eqs. (15)-(16): derived reps [B, K, d], feature map [B, C, h, w] -> S [B, K, 1] in (0, 1)."""
        centres = self.visual_centres(feature)
        interacted = audio + self.cross(self.norm_a(audio), self.norm_c(centres))  # F_av [B, K, d] (residual MCA layer)
        return torch.sigmoid(self.score(interacted))

    def forward(self, audio: Tensor, feature: Tensor) -> Tensor:
        return self.scores(audio, feature) * audio  # eq. (17)


class FusionBlock(nn.Module):
    """Fig. 4 before a MiT stage's blocks: audio queries read the (reduced) image, the image reads back."""

    def __init__(self, audio_dim: int, width: int, heads: int, sr_ratio: int, mlp_ratio: float) -> None:
        super().__init__()
        self.audio_proj = nn.Linear(audio_dim, width)
        self.norm_q = nn.LayerNorm(width, eps=LN_EPS)
        self.norm_v = nn.LayerNorm(width, eps=LN_EPS)
        self.reduce = nn.Conv2d(width, width, kernel_size=sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.norm_r = nn.LayerNorm(width, eps=LN_EPS)
        self.audio_reads_image = MultiHeadAttention(width, heads)  # audio queries, visual keys/values
        self.norm_a = nn.LayerNorm(width, eps=LN_EPS)
        self.ffn = FeedForward(width, mlp_ratio)
        self.norm_v2 = nn.LayerNorm(width, eps=LN_EPS)
        self.norm_a2 = nn.LayerNorm(width, eps=LN_EPS)
        self.image_reads_audio = MultiHeadAttention(width, heads)

    def forward(self, tokens: Tensor, h: int, w: int, audio: Tensor) -> Tensor:
        """visual tokens [B, h*w, C], derived audio [B, K, d] -> visual tokens [B, h*w, C]."""
        q = self.audio_proj(audio)  # [B, K, C]
        context = self.norm_v(tokens)
        if self.reduce is not None:  # the conv that reduces the spatial size of keys/values
            b, n, c = context.shape
            grid = context.transpose(1, 2).reshape(b, c, h, w)
            context = self.reduce(grid).flatten(2).transpose(1, 2)  # [B, N / r^2, C]
        fused = q + self.audio_reads_image(self.norm_q(q), self.norm_r(context))  # [B, K, C]
        fused = fused + self.ffn(self.norm_a(fused))
        return tokens + self.image_reads_audio(self.norm_v2(tokens), self.norm_a2(fused))


class DDESeg(VariantBase):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        d_cfg: DDESegConfig = cfg.ddeseg
        self.visual = MixTransformer(cfg.visual)
        self.audio_encoder = build_audio_encoder(cfg)
        audio_dim = self.audio_encoder.out_dim
        dims = self.visual.dims
        self.memory = SemanticMemory(cfg.bank.num_prototypes, d_cfg.prototypes_per_class, audio_dim)
        self.ddm = DynamicDerivation(audio_dim, d_cfg.num_derived)
        heads_a = attention_heads(audio_dim, d_cfg.heads, 1)
        # DEM before stages 2-4, on the previous stage's output map
        self.dem = nn.ModuleList(
            DynamicElimination(audio_dim, dims[i - 1], d_cfg.num_derived, heads_a, d_cfg.gumbel_tau) for i in range(1, 4)
        )
        self.fusion = nn.ModuleList(
            FusionBlock(audio_dim, dims[i], attention_heads(dims[i], d_cfg.heads, cfg.visual.num_heads[i]),
                        cfg.visual.sr_ratios[i], d_cfg.fusion_mlp_ratio)
            for i in range(4)
        )
        self.decoder = MLPDecoder(dims, cfg.decoder)

    @property
    def bank_buffer(self) -> Tensor:
        """The memory's prototypes [P, d]; `attach_bank` copies the bank file into it."""
        return self.memory.prototypes

    def derive(self, audio: Tensor) -> Tensor:
        """audio [B, S] -> derived representations A^1 [B, K, d] (DDM)."""
        feature = self.audio_encoder.pool(self.audio_encoder(audio))  # F_a [B, d]
        derived, _ = self.ddm(feature, self.memory)
        return derived

    def segment(self, images: Tensor, derived: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, S, S], A^1 [B, K, d] -> (logits [B, K_cls, S/4, S/4], final A [B, K, d])."""
        features = []
        x = images
        audio = derived
        for i, stage in enumerate(self.visual.stages):
            tokens, (h, w) = stage.embed(x)  # [B, h*w, C_i]
            if i > 0:
                audio = self.dem[i - 1](audio, x)  # eq. (1): A^l = DEM(A^{l-1}, V^{l-1})
            tokens = self.fusion[i](tokens, h, w, audio)
            x = stage.transform(tokens, h, w)  # [B, C_i, h, w]
            features.append(x)
        return self.decoder(features), audio

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        """frames uint8 [B, H, W, 3], audio float32 [B, S] -> logits float32 [B, K, H, W]."""
        logits, _ = self.segment(self.preprocess(frames), self.derive(audio))
        return self.to_frame_size(logits, frames)

    def forward_train(self, frames: Tensor, audio: Tensor, audio_aug: Tensor | None = None) -> dict[str, Tensor | None]:
        """{"logits" [B, K, H, W], "queries" (the final derived reps [B, K, d]), "con_loss": None}."""
        logits, reps = self.segment(self.preprocess(frames), self.derive(audio))
        return {"logits": self.to_frame_size(logits, frames), "queries": reps, "con_loss": None}


def build_ddeseg(cfg: ModelConfig) -> DDESeg:
    return DDESeg(cfg)

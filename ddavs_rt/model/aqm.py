"""Audio Query Module (paper section 3.1): Q-Former query generator, then bank refinement.

Query generation: n learnable queries pass through `layers` Q-Former layers, each
    q = q + SelfAttn(LN(q));  q = q + CrossAttn(LN(q), E_a);  q = q + FFN(LN(q))
(pre-LN; a final LN closes the stack), giving Q_a [B, n, d] from the audio tokens E_a [B, L, d].

Bank refinement, eq. (4), with the fixed prototype bank M [P, d]:
    A = softmax((Q_a W_Q)(M W_K)^T / sqrt(d)),   Q~ = A (M W_V),   Q = LN(Q_a + gamma * Q~)
M is a buffer (never trained, not saved in the weights: the checkpoint stores it separately in
`bank.safetensors`). Until a bank is attached it is all zeros, which makes the refinement add
nothing but a LayerNorm.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ddavs_rt.config import AQMConfig
from ddavs_rt.model.layers import LN_EPS, FeedForward, MultiHeadAttention


class QFormerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.self_attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm_audio = nn.LayerNorm(dim, eps=LN_EPS)
        self.cross_attn = MultiHeadAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)
        self.ffn = FeedForward(dim, mlp_ratio)

    def forward(self, queries: Tensor, audio: Tensor) -> Tensor:
        """queries [B, n, d], audio tokens [B, L, d] -> queries [B, n, d]."""
        x = self.norm1(queries)
        queries = queries + self.self_attn(x, x)
        queries = queries + self.cross_attn(self.norm2(queries), self.norm_audio(audio))
        return queries + self.ffn(self.norm3(queries))


class QueryGenerator(nn.Module):
    """Q-Former: learnable queries [n, d] read the audio tokens."""

    def __init__(self, dim: int, cfg: AQMConfig) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, dim) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, audio: Tensor) -> Tensor:
        """audio tokens [B, L, d] -> Q_a [B, n, d]."""
        # [n, d] -> [B, n, d]; expand against the batch so the batch stays symbolic in export
        q = self.queries.unsqueeze(0).expand(audio.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, audio)
        return self.norm(q)


class BankRefinement(nn.Module):
    """Eq. (4): single-head cross-attention from the queries to the fixed prototype bank."""

    def __init__(self, dim: int, num_prototypes: int, gamma: float) -> None:
        super().__init__()
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.gamma = gamma
        self.scale = 1.0 / math.sqrt(dim)
        self.register_buffer("bank", torch.zeros(num_prototypes, dim), persistent=False)  # M [P, d]

    def forward(self, queries: Tensor) -> Tensor:
        """Q_a [B, n, d] -> Q [B, n, d]."""
        q = self.w_q(queries)  # [B, n, d]
        k = self.w_k(self.bank)  # [P, d]
        v = self.w_v(self.bank)  # [P, d]
        attn = torch.softmax(torch.matmul(q, k.transpose(0, 1)) * self.scale, dim=-1)  # [B, n, P]
        refined = torch.matmul(attn, v)  # [B, n, d]
        return self.norm(queries + self.gamma * refined)


class AudioQueryModule(nn.Module):
    """E_a [B, L, d] -> Q [B, n, d]; `bank_refinement: false` stops after the Q-Former."""

    def __init__(self, dim: int, cfg: AQMConfig, num_prototypes: int) -> None:
        super().__init__()
        self.generator = QueryGenerator(dim, cfg)
        self.refinement = BankRefinement(dim, num_prototypes, cfg.gamma) if cfg.bank_refinement else None

    def forward(self, audio: Tensor) -> Tensor:
        queries = self.generator(audio)
        if self.refinement is not None:
            queries = self.refinement(queries)
        return queries

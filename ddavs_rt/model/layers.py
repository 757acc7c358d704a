"""Building blocks shared by the model's modules: LayerNorm epsilon, stochastic depth, attention.

The MiT encoder (`mit.py`), the cross alignment blocks (`avam.py`), the AQM, HTSAT and the DDESeg /
SDAVS variants all take these from here, so each exists once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6  # LayerNorm epsilon of the project's own blocks (AQM, AVAM, variants)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, prob: float) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.prob == 0.0:
            return x
        keep = 1.0 - self.prob
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device) < keep
        return x * mask.to(x.dtype) / keep


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (batch first).

    Written with `scaled_dot_product_attention` so it exports to ONNX with a dynamic batch.
    """

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim)
        self.v = nn.Linear(kv_dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """query [B, Nq, C], context [B, Nk, Ckv] -> [B, Nq, C]."""
        b, nq, c = query.shape
        d = c // self.heads
        q = self.q(query).reshape(b, nq, self.heads, d).transpose(1, 2)  # [B, h, Nq, d]
        k = self.k(context).reshape(b, -1, self.heads, d).transpose(1, 2)  # [B, h, Nk, d]
        v = self.v(context).reshape(b, -1, self.heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, h, Nq, d]
        return self.proj(out.transpose(1, 2).reshape(b, nq, c))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear, hidden width `dim * ratio`."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def attention_heads(width: int, wanted: int, fallback: int) -> int:
    """`wanted` heads when they divide `width`, else the MiT stage's own head count."""
    return wanted if width % wanted == 0 else fallback


__all__ = ["LN_EPS", "DropPath", "FeedForward", "MultiHeadAttention", "attention_heads"]

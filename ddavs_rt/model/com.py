"""Contrastive Optimization Module (paper section 3.2), used in training only.

    z_i = phi(q_i) / ||phi(q_i)||,   z'_i = phi(q'_i) / ||phi(q'_i)||           eq. (5)
    L_con = -1/n sum_i log( exp(s_ii / tau) / sum_j exp(s_ij / tau) ),  s_ij = z_i . z'_j   eq. (6)

with Q the queries of the clean waveform and Q' those of its augmented copy (same encoder and
AQM). The n query slots of one clip are the positives/negatives; the loss is averaged over the
batch. The waveform augmentation lives with the training code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddavs_rt.config import COMConfig


def info_nce(z: Tensor, z_aug: Tensor, temperature: float) -> Tensor:
    """l2-normalised z, z_aug [B, n, p] -> mean InfoNCE loss over slots and batch (scalar)."""
    logits = torch.matmul(z, z_aug.transpose(1, 2)) / temperature  # s_ij / tau: [B, n, n]
    b, n, _ = logits.shape
    targets = torch.arange(n, device=logits.device).expand(b, n)  # slot i's positive is slot i
    return F.cross_entropy(logits.reshape(b * n, n), targets.reshape(b * n))


class Projector(nn.Module):
    """phi: a two-layer MLP d -> d -> projector_dim."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ContrastiveModule(nn.Module):
    """(Q, Q') [B, n, d] each -> L_con (scalar)."""

    def __init__(self, dim: int, cfg: COMConfig) -> None:
        super().__init__()
        self.projector = Projector(dim, cfg.projector_dim)
        self.temperature = cfg.temperature

    def embed(self, queries: Tensor) -> Tensor:
        """eq. (5): [B, n, d] -> unit vectors [B, n, p]."""
        return F.normalize(self.projector(queries), dim=-1)

    def forward(self, queries: Tensor, queries_aug: Tensor) -> Tensor:
        return info_nce(self.embed(queries), self.embed(queries_aug), self.temperature)

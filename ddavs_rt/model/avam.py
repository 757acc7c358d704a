"""Audio-Visual Alignment Module (paper section 3.3) and the baseline fusion block.

A cross alignment block runs before the transformer blocks of a MiT stage, on the tokens the
stage's patch embedding produced. With the audio queries Q projected to the stage width C:

    H_a = q + Attn(LN(q), LN(H_v), LN(H_v))              audio-guided filtering, eq. (7)
    H_a = H_a + FFN(LN(H_a))
    H_v = H_v + Attn(LN(H_v), LN(H_a), LN(H_a))          visual-guided enhancement, eq. (8)

(pre-norm residual form). Every stage starts again from the same Q (eq. 3: AVAM^i(Q, H_v^{i-1})),
so the filtered H_a of one stage is not carried into the next.

Where AVAM sits is ambiguous in the paper (docs/architecture.md, "Where AVAM sits"): eq. (3)
indexes AVAM by stage, Appendix A.2 / Table 6 speak of an "alignment decoder" fed at the
encoder-decoder interface, and Table 4 numbers the injection blocks as the visual backbone's
transformer blocks 1-4. The code follows Table 4: before the transformer blocks of MiT stages.

`BaselineInterfaceFusion` is this project's fusion for the AVAM-off baseline, not a paper
component: once, after stage 4 (at the encoder-decoder interface), the stage-4 tokens attend to
the audio queries (or tokens), so every variant of the ablation uses audio. (The paper's Table 3
baseline names no fusion; Table 6's "Head" rows are late-fusion alternatives it rejects.)
"""

from __future__ import annotations

from torch import Tensor, nn

from ddavs_rt.model.layers import LN_EPS, FeedForward, MultiHeadAttention


class CrossAlignmentBlock(nn.Module):
    """Bidirectional cross-attention between audio queries and one stage's visual tokens."""

    def __init__(self, audio_dim: int, width: int, heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.query_proj = nn.Linear(audio_dim, width)  # audio width d -> stage width C
        self.norm_q = nn.LayerNorm(width, eps=LN_EPS)
        self.norm_v1 = nn.LayerNorm(width, eps=LN_EPS)
        self.filtering = MultiHeadAttention(width, heads)  # eq. (7)
        self.norm_a = nn.LayerNorm(width, eps=LN_EPS)
        self.ffn = FeedForward(width, mlp_ratio)
        self.norm_v2 = nn.LayerNorm(width, eps=LN_EPS)
        self.norm_a2 = nn.LayerNorm(width, eps=LN_EPS)
        self.enhancement = MultiHeadAttention(width, heads)  # eq. (8)

    def forward(self, visual: Tensor, queries: Tensor) -> Tensor:
        """visual tokens [B, N, C], audio queries [B, n, d] -> visual tokens [B, N, C]."""
        q = self.query_proj(queries)  # [B, n, d] -> [B, n, C]
        h_a = q + self.filtering(self.norm_q(q), self.norm_v1(visual))  # queries look at the image
        h_a = h_a + self.ffn(self.norm_a(h_a))
        return visual + self.enhancement(self.norm_v2(visual), self.norm_a2(h_a))  # image looks back


class BaselineInterfaceFusion(nn.Module):
    """The AVAM-off baseline's fusion (this project's, not the paper's): stage-4 tokens attend to
    the audio once, at the encoder-decoder interface."""

    def __init__(self, audio_dim: int, width: int, heads: int) -> None:
        super().__init__()
        self.audio_proj = nn.Linear(audio_dim, width)
        self.norm_v = nn.LayerNorm(width, eps=LN_EPS)
        self.norm_a = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = MultiHeadAttention(width, heads)

    def forward(self, feature: Tensor, audio: Tensor) -> Tensor:
        """feature map [B, C, h, w], audio [B, n, d] -> feature map [B, C, h, w]."""
        b, c, h, w = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C]
        a = self.norm_a(self.audio_proj(audio))  # [B, n, C]
        tokens = tokens + self.attn(self.norm_v(tokens), a)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

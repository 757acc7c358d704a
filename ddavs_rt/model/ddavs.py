"""The DDAVS network, assembled from its modules in the order of the paper's equations (1)-(3).

    E_a = audio_encoder(audio)                      audio tokens [B, L, d]
    Q   = AQM(E_a)                                  eq. (1): bank-grounded queries [B, n, d]
                                                    (aqm off: Q = E_a, the raw tokens)
    H_v^0 = image; per MiT stage i:                 eq. (2)-(3)
        tokens = patch_embed_i(H_v^{i-1})
        tokens = CrossAlignment_i(tokens, Q)        only for i in avam.positions
        H_v^i  = norm_i(blocks_i(tokens))
    H_v^4 = BaselineInterfaceFusion(H_v^4, Q)       only when avam is off (the project's baseline fusion)
    logits = decoder(H_v^1..4)                      upsampled to the frame size

COM runs only in `forward_train`, on the queries of the clean and the augmented waveform.
`forward` is the engine contract: uint8 frames [B, H, W, 3] RGB and float32 audio [B, S] in,
float32 logits [B, K, H, W] out; normalisation and resizing happen inside so every backend sees
the same graph.
"""

from __future__ import annotations

from torch import Tensor, nn

from ddavs_rt.config import ModelConfig
from ddavs_rt.model.aqm import AudioQueryModule
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.avam import BaselineInterfaceFusion, CrossAlignmentBlock
from ddavs_rt.model.com import ContrastiveModule
from ddavs_rt.model.decoder import MLPDecoder
from ddavs_rt.model.frames import FramePreprocess, to_frame_size
from ddavs_rt.model.layers import attention_heads
from ddavs_rt.model.mit import MixTransformer



class DDAVS(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.visual = MixTransformer(cfg.visual)
        self.audio_encoder = build_audio_encoder(cfg)
        audio_dim = self.audio_encoder.out_dim
        dims = self.visual.dims

        self.aqm = AudioQueryModule(audio_dim, cfg.aqm, cfg.bank.num_prototypes) if cfg.aqm.enabled else None
        self.com = ContrastiveModule(audio_dim, cfg.com) if cfg.com.enabled else None

        # one cross alignment block per MiT stage (None where no audio is injected)
        positions = set(cfg.avam.positions) if cfg.avam.enabled else set()
        self.avam = nn.ModuleList(
            CrossAlignmentBlock(audio_dim, dims[i], attention_heads(dims[i], cfg.avam.heads, cfg.visual.num_heads[i]))
            if i + 1 in positions else nn.Identity()
            for i in range(4)
        )
        self._avam_stages = tuple(i for i in range(4) if i + 1 in positions)
        self.fusion = (
            None if cfg.avam.enabled
            else BaselineInterfaceFusion(audio_dim, dims[3], attention_heads(dims[3], cfg.avam.heads, cfg.visual.num_heads[3]))
        )
        self.decoder = MLPDecoder(dims, cfg.decoder)

        self.frames = FramePreprocess(cfg.input_size)

    # -- pieces -------------------------------------------------------------------------------

    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 [B, H, W, 3] RGB -> normalised float [B, 3, S, S] at cfg.input_size."""
        return self.frames(frames)

    def audio_queries(self, audio: Tensor) -> Tensor:
        """audio [B, S] -> Q [B, n, d] (AQM) or the audio tokens [B, L, d] (AQM off)."""
        tokens = self.audio_encoder(audio)  # E_a [B, L, d]
        return self.aqm(tokens) if self.aqm is not None else tokens  # eq. (1)

    def segment(self, images: Tensor, queries: Tensor) -> Tensor:
        """images [B, 3, S, S], queries [B, n, d] -> logits [B, K, S/4, S/4]."""
        features = []
        x = images  # H_v^0, eq. (2)
        for i, stage in enumerate(self.visual.stages):
            tokens, (h, w) = stage.embed(x)  # [B, h*w, C_i]
            if i in self._avam_stages:
                tokens = self.avam[i](tokens, queries)  # eq. (3): cross alignment, then blocks
            x = stage.transform(tokens, h, w)  # [B, C_i, h, w]
            features.append(x)
        if self.fusion is not None:
            features[3] = self.fusion(features[3], queries)
        return self.decoder(features)

    # -- entry points -------------------------------------------------------------------------

    def forward(self, frames: Tensor, audio: Tensor) -> Tensor:
        """frames uint8 [B, H, W, 3], audio float32 [B, S] -> logits float32 [B, K, H, W]."""
        queries = self.audio_queries(audio)
        logits = self.segment(self.preprocess(frames), queries)
        return to_frame_size(logits, frames)

    def forward_train(self, frames: Tensor, audio: Tensor, audio_aug: Tensor | None = None) -> dict[str, Tensor | None]:
        """Training pass: {"logits" [B, K, H, W], "queries" [B, n, d], "con_loss" scalar or None}."""
        queries = self.audio_queries(audio)
        logits = self.segment(self.preprocess(frames), queries)
        logits = to_frame_size(logits, frames)
        con_loss = None
        if self.com is not None and audio_aug is not None:
            con_loss = self.com(queries, self.audio_queries(audio_aug))
        return {"logits": logits, "queries": queries, "con_loss": con_loss}

    # -- bank ---------------------------------------------------------------------------------

    @property
    def bank_buffer(self) -> Tensor | None:
        """The prototype bank M [P, d] the AQM refines against, or None without refinement."""
        if self.aqm is None or self.aqm.refinement is None:
            return None
        return self.aqm.refinement.bank


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network of `cfg.variant`: DDAVS, or the DDESeg / SDAVS comparison variants."""
    if cfg.variant == "ddeseg":
        from ddavs_rt.model.ddeseg import DDESeg

        return DDESeg(cfg)
    if cfg.variant == "sdavs":
        from ddavs_rt.model.sdavs import SDAVS

        return SDAVS(cfg)
    return DDAVS(cfg)

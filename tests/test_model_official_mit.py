"""Official Mix Transformer weights (mmseg and Hugging Face names) load into our encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.config import VisualEncoderConfig
from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.mit import MixTransformer
from ddavs_rt.model.official_mit import load_mit_state_dict, load_official_mit

CFG = VisualEncoderConfig(variant="b0")
KERNELS = (7, 3, 3, 3)


def mmseg_state(cfg: VisualEncoderConfig = CFG, seed: int = 0) -> dict[str, torch.Tensor]:
    """Names and shapes as in the official mit_b0.pth, random values."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.05  # noqa: E731
    state: dict[str, torch.Tensor] = {}
    cin = 3
    for i, (c, depth, sr) in enumerate(zip(cfg.embed_dims, cfg.depths, cfg.sr_ratios), start=1):
        k = KERNELS[i - 1]
        state[f"patch_embed{i}.proj.weight"], state[f"patch_embed{i}.proj.bias"] = r(c, cin, k, k), r(c)
        state[f"patch_embed{i}.norm.weight"], state[f"patch_embed{i}.norm.bias"] = 1 + r(c), r(c)
        h = 4 * c
        for j in range(depth):
            b = f"block{i}.{j}"
            state.update({
                f"{b}.norm1.weight": 1 + r(c), f"{b}.norm1.bias": r(c),
                f"{b}.attn.q.weight": r(c, c), f"{b}.attn.q.bias": r(c),
                f"{b}.attn.kv.weight": r(2 * c, c), f"{b}.attn.kv.bias": r(2 * c),
                f"{b}.attn.proj.weight": r(c, c), f"{b}.attn.proj.bias": r(c),
                f"{b}.norm2.weight": 1 + r(c), f"{b}.norm2.bias": r(c),
                f"{b}.mlp.fc1.weight": r(h, c), f"{b}.mlp.fc1.bias": r(h),
                f"{b}.mlp.dwconv.dwconv.weight": r(h, 1, 3, 3), f"{b}.mlp.dwconv.dwconv.bias": r(h),
                f"{b}.mlp.fc2.weight": r(c, h), f"{b}.mlp.fc2.bias": r(c),
            })
            if sr > 1:
                state.update({
                    f"{b}.attn.sr.weight": r(c, c, sr, sr), f"{b}.attn.sr.bias": r(c),
                    f"{b}.attn.norm.weight": 1 + r(c), f"{b}.attn.norm.bias": r(c),
                })
        state[f"norm{i}.weight"], state[f"norm{i}.bias"] = 1 + r(c), r(c)
        cin = c
    state["head.weight"], state["head.bias"] = r(1000, cfg.embed_dims[3]), r(1000)  # ImageNet head, ignored
    return state


def hf_state(mm: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights under Hugging Face Segformer names (kv split into key and value)."""
    parts = {"norm1": "layer_norm_1", "norm2": "layer_norm_2", "attn.q": "attention.self.query",
             "attn.sr": "attention.self.sr", "attn.norm": "attention.self.layer_norm",
             "attn.proj": "attention.output.dense", "mlp.fc1": "mlp.dense1",
             "mlp.dwconv.dwconv": "mlp.dwconv.dwconv", "mlp.fc2": "mlp.dense2"}
    out = {}
    for key, value in mm.items():
        if key.startswith("head."):
            continue
        head, _, rest = key.partition(".")
        if head.startswith("patch_embed"):
            i = int(head[-1]) - 1
            out[f"segformer.encoder.patch_embeddings.{i}.{rest.replace('norm', 'layer_norm')}"] = value
        elif head.startswith("norm"):
            out[f"segformer.encoder.layer_norm.{int(head[-1]) - 1}.{rest}"] = value
        else:
            i = int(head[-1]) - 1
            j, _, rest = rest.partition(".")
            name, _, param = rest.rpartition(".")
            prefix = f"segformer.encoder.block.{i}.{j}"
            if name == "attn.kv":
                c = value.shape[0] // 2
                out[f"{prefix}.attention.self.key.{param}"] = value[:c]
                out[f"{prefix}.attention.self.value.{param}"] = value[c:]
            else:
                out[f"{prefix}.{parts[name]}.{param}"] = value
    out["decode_head.classifier.weight"] = torch.zeros(2, 256, 1, 1)
    return out


def _run(encoder: MixTransformer) -> torch.Tensor:
    torch.manual_seed(3)
    with torch.no_grad():
        return encoder.eval()(torch.randn(1, 3, 64, 64))[3]


def test_mmseg_file_loads_and_changes_the_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = MixTransformer(CFG)
    before = _run(encoder)
    state = mmseg_state()
    torch.save(state, tmp_path / "mit_b0.pth")
    loaded = load_official_mit(encoder, tmp_path / "mit_b0.pth")
    assert loaded == len(encoder.state_dict())
    ours = encoder.state_dict()
    assert torch.equal(ours["stages.0.patch_embed.proj.weight"], state["patch_embed1.proj.weight"])
    assert torch.equal(ours["stages.2.blocks.1.attn.kv.weight"], state["block3.1.attn.kv.weight"])
    assert torch.equal(ours["stages.1.blocks.0.mlp.dwconv.weight"], state["block2.0.mlp.dwconv.dwconv.weight"])
    assert torch.equal(ours["stages.3.norm.bias"], state["norm4.bias"])
    assert not torch.allclose(before, _run(encoder))


def test_wrapped_mmseg_checkpoint_with_backbone_prefix(tmp_path: Path) -> None:
    state = mmseg_state(seed=2)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "seg.pth")
    encoder = MixTransformer(CFG)
    load_official_mit(encoder, tmp_path / "seg.pth")
    assert torch.equal(encoder.state_dict()["stages.0.blocks.1.attn.q.weight"], state["block1.1.attn.q.weight"])


def test_huggingface_names_give_the_same_encoder() -> None:
    mm = mmseg_state(seed=1)
    a, b = MixTransformer(CFG), MixTransformer(CFG)
    load_mit_state_dict(a, mm)
    load_mit_state_dict(b, hf_state(mm))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    torch.testing.assert_close(_run(a), _run(b), rtol=0, atol=0)


def test_shape_mismatch_names_the_official_key() -> None:
    state = mmseg_state()
    state["block2.0.mlp.fc1.weight"] = torch.zeros(7, 64)
    with pytest.raises(CheckpointError) as error:
        load_mit_state_dict(MixTransformer(CFG), state)
    message = str(error.value)
    assert "block2.0.mlp.fc1.weight" in message and "(7, 64)" in message and "(256, 64)" in message
    assert "\n" not in message


def test_wrong_variant_and_foreign_keys_are_refused() -> None:
    with pytest.raises(CheckpointError, match="deeper MiT variant"):
        load_mit_state_dict(MixTransformer(VisualEncoderConfig(variant="b0", depths=(1, 2, 2, 2))), mmseg_state())
    with pytest.raises(CheckpointError, match="shallower"):
        load_mit_state_dict(MixTransformer(VisualEncoderConfig(variant="b0", depths=(3, 2, 2, 2))), mmseg_state())
    state = mmseg_state()
    state["features.0.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="features.0.weight"):
        load_mit_state_dict(MixTransformer(CFG), state)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_official_mit(MixTransformer(CFG), tmp_path / "bad.pth")


# ------------------------------------------------------------------ LayerNorm epsilons


def _norm_eps(encoder: MixTransformer) -> dict[str, float]:
    return {name: module.eps for name, module in encoder.named_modules() if isinstance(module, torch.nn.LayerNorm)}


def test_layernorm_epsilons_are_those_of_mmseg_mix_transformer() -> None:
    """NVlabs/SegFormer mmseg/models/backbones/mix_transformer.py: OverlapPatchEmbed.norm and
    Attention.norm are plain nn.LayerNorm (eps 1e-5); Block.norm1/norm2 and the stage norms
    norm1..norm4 are `norm_layer` = partial(nn.LayerNorm, eps=1e-6) in mit_b0..mit_b5."""
    eps = _norm_eps(MixTransformer(CFG))
    assert CFG.layernorm_eps == "mmseg"
    for name, value in eps.items():
        if name.endswith("patch_embed.norm") or name.endswith("attn.norm"):
            assert value == 1e-5, name
        else:
            assert name.endswith(("norm1", "norm2")) or name.endswith(".norm"), name
            assert value == 1e-6, name
    assert sum(v == 1e-5 for v in eps.values()) == 4 + 3 * 2  # 4 patch embeddings, sr norms of stages 1-3 (2 blocks each)


def test_legacy_epsilons_and_a_config_json_without_the_field(tmp_path: Path) -> None:
    """A checkpoint saved before the field existed (config.json without visual.layernorm_eps)
    loads with 1e-6 everywhere and computes what it computed then; the mmseg epsilons differ."""
    import json

    from ddavs_rt.config import ModelConfig
    from ddavs_rt.model.checkpoint import load_checkpoint, save_checkpoint
    from ddavs_rt.model.ddavs import build_model

    legacy = VisualEncoderConfig(variant="b0", layernorm_eps="legacy")
    assert set(_norm_eps(MixTransformer(legacy)).values()) == {1e-6}
    cfg = ModelConfig.model_validate({
        "name": "eps", "input_size": 32,
        "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1], "layernorm_eps": "legacy"},
        "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
        "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "bank_refinement": False},
        "com": {"enabled": False}, "avam": {"heads": 4}, "decoder": {"hidden_dim": 16},
    })
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_checkpoint(tmp_path / "old", model, cfg)
    data = json.loads((tmp_path / "old" / "config.json").read_text())
    del data["visual"]["layernorm_eps"]  # as written before the field existed
    (tmp_path / "old" / "config.json").write_text(json.dumps(data))
    loaded, loaded_cfg = load_checkpoint(tmp_path / "old")
    assert loaded_cfg.visual.layernorm_eps == "legacy"
    frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    audio = torch.randn(2, 16000) * 0.1
    with torch.no_grad():
        expected = model(frames, audio)
        assert torch.equal(loaded.eval()(frames, audio), expected)
        mmseg = build_model(cfg.model_copy(update={"visual": cfg.visual.model_copy(update={"layernorm_eps": "mmseg"})})).eval()
        mmseg.load_state_dict(model.state_dict())
        assert not torch.equal(mmseg(frames, audio), expected)
    assert ModelConfig.model_validate({"name": "new"}).visual.layernorm_eps == "mmseg"  # new configs: mmseg

"""Official Mix Transformer weights (mmseg and Hugging Face names) load into our encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.config import VisualEncoderConfig
from ddavs_rt.errors import CheckpointError
from ddavs_rt.model.mit import MixTransformer
from ddavs_rt.model.official_mit import load_mit_state_dict, load_official_mit
from support.official_files import describe, random_state

CFG = VisualEncoderConfig(variant="b0")


def mmseg_state(cfg: VisualEncoderConfig = CFG, seed: int = 0) -> dict[str, torch.Tensor]:
    """Names and shapes of the official mit_b0.pth (tests/fixtures/official/mit_b0_mmseg.json), random values."""
    assert cfg is CFG
    return random_state("mit_b0_mmseg", seed)


def hf_state(mm: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same weights under the names of Hugging Face's nvidia/mit-b0 file
    (tests/fixtures/official/mit_b0_huggingface.json): each key there is filled from the mmseg key
    of the same tensor, key and value being the two halves of mmseg's kv."""
    spec = describe("mit_b0_huggingface")["keys"]
    out = {}
    for key, shape in spec.items():
        if key.startswith("classifier."):
            out[key] = torch.zeros(shape)
            continue
        parts = key.split(".")  # segformer.encoder.<kind>.<i>...
        kind, i = parts[2], int(parts[3])
        if kind == "patch_embeddings":
            source = f"patch_embed{i + 1}.{parts[4].replace('layer_norm', 'norm')}.{parts[5]}"
        elif kind == "layer_norm":
            source = f"norm{i + 1}.{parts[4]}"
        else:
            j, name, param = parts[4], ".".join(parts[5:-1]), parts[-1]
            if name in ("attention.self.key", "attention.self.value"):
                kv = mm[f"block{i + 1}.{j}.attn.kv.{param}"]
                half = kv.shape[0] // 2
                out[key] = kv[:half] if name.endswith("key") else kv[half:]
                continue
            ours = {"layer_norm_1": "norm1", "layer_norm_2": "norm2", "attention.self.query": "attn.q",
                    "attention.self.sr": "attn.sr", "attention.self.layer_norm": "attn.norm",
                    "attention.output.dense": "attn.proj", "mlp.dense1": "mlp.fc1",
                    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv", "mlp.dense2": "mlp.fc2"}[name]
            source = f"block{i + 1}.{j}.{ours}.{param}"
        out[key] = mm[source]
        assert list(out[key].shape) == shape, key
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

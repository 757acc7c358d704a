"""DDESeg and SDAVS variants: shapes, gradients, eval determinism, the semantic memory, elimination."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ddavs_rt.bank import PrototypeBank, module_sha256
from ddavs_rt.config import ModelConfig, load_config, parse_config
from ddavs_rt.errors import ConfigError
from ddavs_rt.model.checkpoint import load_checkpoint, save_checkpoint
from ddavs_rt.model.ddavs import build_model
from ddavs_rt.model.ddeseg import DDESeg, DynamicElimination
from ddavs_rt.model.sdavs import SDAVS

ROOT = Path(__file__).resolve().parents[1]
TINY = {"ddeseg": ROOT / "configs/model/ddeseg-tiny.yaml", "sdavs": ROOT / "configs/model/sdavs-tiny.yaml"}
SIZE = 64


def _cfg(variant: str) -> ModelConfig:
    return load_config(TINY[variant], ModelConfig).model_copy(update={"input_size": SIZE})


def _inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, SIZE, SIZE, 3), dtype=torch.uint8, generator=g)
    audio = (torch.rand(batch, cfg.window_samples, generator=g) * 2 - 1) * 0.5
    return frames, audio


def _random_bank(model: DDESeg, cfg: ModelConfig, seed: int = 0) -> PrototypeBank:
    """A bank laid out as `ddavs-rt build-bank` writes it: class by class, k*m rows each."""
    g = torch.Generator().manual_seed(seed)
    per_class = cfg.ddeseg.prototypes_per_class
    classes = cfg.bank.num_prototypes // per_class
    centres = torch.randn(classes, 1, model.audio_encoder.out_dim, generator=g) * 2
    protos = (centres + 0.3 * torch.randn(classes, per_class, model.audio_encoder.out_dim, generator=g)).reshape(-1, model.audio_encoder.out_dim)
    return PrototypeBank(
        prototypes=protos, class_index=torch.arange(classes).repeat_interleave(per_class),
        class_names=[f"c{i}" for i in range(classes)], encoder_kind=cfg.audio.kind,
        encoder_sha256=module_sha256(model.audio_encoder), k=per_class, m=1,
    )


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.mark.parametrize("variant,cls", [("ddeseg", DDESeg), ("sdavs", SDAVS)])
def test_build_model_dispatches_and_keeps_the_engine_contract(variant, cls):
    torch.manual_seed(0)
    cfg = _cfg(variant)
    model = build_model(cfg)
    assert isinstance(model, cls)
    assert model.com is None
    frames, audio = _inputs(cfg, batch=3)
    frames = frames[:, :48]  # a non-square frame: logits come back at the frame's own size
    with torch.no_grad():
        logits = model.eval()(frames, audio)
    assert logits.shape == (3, 1, 48, SIZE) and logits.dtype == torch.float32
    out = model.train().forward_train(frames, audio, audio)
    assert set(out) == {"logits", "queries", "con_loss"}
    assert out["logits"].shape == (3, 1, 48, SIZE) and out["con_loss"] is None
    if variant == "ddeseg":
        assert out["queries"].shape == (3, cfg.ddeseg.num_derived, model.audio_encoder.out_dim)
    else:
        assert out["queries"].shape == (3, model.audio_encoder.num_tokens, model.audio_encoder.out_dim)


@pytest.mark.parametrize("variant", ["ddeseg", "sdavs"])
def test_gradients_reach_every_trainable_parameter(variant):
    torch.manual_seed(1)
    cfg = _cfg(variant)
    model = build_model(cfg).train()
    if variant == "ddeseg":  # a filled memory: with an all-zero one the K centres tie and W_f1/W_f2 see equal edges
        model.bank_buffer.copy_(_random_bank(model, cfg).prototypes)
    frames, audio = _inputs(cfg)
    logits = model.forward_train(frames, audio)["logits"]
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    (logits * weights).sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("variant", ["ddeseg", "sdavs"])
def test_eval_is_deterministic(variant):
    torch.manual_seed(2)
    cfg = _cfg(variant)
    model = build_model(cfg)
    if variant == "ddeseg":
        model.bank_buffer.copy_(_random_bank(model, cfg).prototypes)
    frames, audio = _inputs(cfg)
    model.eval()
    with torch.no_grad():
        first, second = model(frames, audio), model(frames, audio)
    assert torch.equal(first, second)
    assert first.std() > 0


def test_ddeseg_training_samples_gumbel_noise_and_eval_does_not():
    torch.manual_seed(3)
    cfg = _cfg("ddeseg")
    model = build_model(cfg)
    features = torch.randn(2, model.visual.dims[0], 8, 8)
    dem = model.dem[0]
    dem.train()
    assert not torch.allclose(dem.assignment(dem.norm_v(dem.visual_proj(features.flatten(2).transpose(1, 2)))),
                              dem.assignment(dem.norm_v(dem.visual_proj(features.flatten(2).transpose(1, 2)))))
    dem.eval()
    centres = dem.visual_centres(features)
    assert torch.equal(centres, dem.visual_centres(features))
    assert centres.shape == (2, cfg.ddeseg.num_derived, model.audio_encoder.out_dim)


def test_memory_is_a_buffer_without_gradient_that_the_output_depends_on():
    torch.manual_seed(4)
    cfg = _cfg("ddeseg")
    model = build_model(cfg).train()
    memory = model.bank_buffer
    assert memory.shape == (cfg.bank.num_prototypes, model.audio_encoder.out_dim)
    assert not memory.requires_grad
    assert all(p is not memory for p in model.parameters())
    assert not any("memory" in key for key in model.state_dict())  # travels as bank.safetensors
    memory.copy_(_random_bank(model, cfg).prototypes)
    frames, audio = _inputs(cfg)
    model.forward_train(frames, audio)["logits"].sum().backward()
    assert memory.grad is None
    model.eval()
    with torch.no_grad():
        before = model(frames, audio)
        memory.copy_(_random_bank(model, cfg, seed=9).prototypes)
        after = model(frames, audio)
    assert not torch.allclose(before, after)


def test_memory_comes_from_the_bank_file_through_the_checkpoint(tmp_path):
    torch.manual_seed(5)
    cfg = _cfg("ddeseg")
    model = build_model(cfg)
    bank = _random_bank(model, cfg)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "ckpt", model, cfg, bank=bank))
    assert torch.equal(loaded.bank_buffer, bank.prototypes)
    per_class_mean = torch.stack([bank.prototypes[bank.class_index == c].mean(0) for c in range(len(bank.class_names))])
    assert torch.allclose(loaded.memory.centres(), per_class_mean, atol=1e-6)
    # the K nearest centres of an embedding sitting on class 3's centre start with class 3
    index = loaded.ddm.nearest_classes(per_class_mean[3:4] + 0.01, loaded.memory.centres())
    assert index[0, 0].item() == 3 and index.shape == (1, cfg.ddeseg.num_derived)


def test_elimination_scores_unmatched_audio_below_matched_audio():
    """Train DEM alone on a constructed case: each image shows two classes; of two audio reps one is
    a shown class, the other a class absent from the image. After training, on new samples, the
    absent class scores lower and is scaled down."""
    torch.manual_seed(0)
    d, classes = 16, 6
    emb = torch.linalg.qr(torch.randn(d, d))[0][:classes] * 4.0  # orthogonal class vectors [C, d]

    def sample(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.stack([torch.randperm(classes, generator=g)[:3] for _ in range(n)])  # shown, shown, absent
        image = torch.zeros(n, d, 4, 4)
        image[:, :, :, :2] = emb[picks[:, 0]][:, :, None, None]
        image[:, :, :, 2:] = emb[picks[:, 1]][:, :, None, None]
        image = image + 0.1 * torch.randn(image.shape, generator=g)
        return torch.stack([emb[picks[:, 0]], emb[picks[:, 2]]], dim=1), image  # [n, 2, d], [n, d, 4, 4]

    dem = DynamicElimination(d, d, num_centres=4, heads=2, tau=1.0).train()
    optimiser = torch.optim.Adam(dem.parameters(), lr=1e-2)
    target = torch.tensor([1.0, 0.0]).view(1, 2, 1)
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        audio, image = sample(32, g)
        scores = dem.scores(audio, image)
        loss = torch.nn.functional.binary_cross_entropy(scores, target.expand_as(scores))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    dem.eval()
    audio, image = sample(200, torch.Generator().manual_seed(7))
    with torch.no_grad():
        scores = dem.scores(audio, image)[..., 0]  # [n, 2]
        kept = dem(audio, image).norm(dim=-1)  # eq. (17)
    assert (scores[:, 0] > scores[:, 1]).float().mean() >= 0.95
    assert scores[:, 0].mean() - scores[:, 1].mean() > 0.5
    assert (kept[:, 1] < kept[:, 0]).float().mean() >= 0.95


@pytest.mark.parametrize("update,message", [
    ({"com": {"enabled": True}}, "has no COM"),
    ({"ddeseg": {"prototypes_per_class": 7}}, "not a multiple"),
    ({"ddeseg": {"num_derived": 40, "prototypes_per_class": 6}}, "exceeds the memory"),
    ({"variant": "segformer"}, "variant"),
])
def test_variant_config_errors_are_one_line(update, message):
    data = load_config(TINY["ddeseg"], ModelConfig).model_dump(mode="json")
    data.update(update)
    if "com" in update:
        data["aqm"]["enabled"] = True
    with pytest.raises(ConfigError) as info:
        parse_config(data, ModelConfig, "ddeseg.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_sdavs_attention_width_must_split_into_heads():
    data = load_config(TINY["sdavs"], ModelConfig).model_dump(mode="json")
    data["sdavs"]["attn_dim"] = 30
    with pytest.raises(ConfigError, match="not divisible"):
        parse_config(data, ModelConfig, "sdavs.yaml")

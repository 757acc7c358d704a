"""Training behaviour of the tiny DDAVS: gradients, the fixed bank, determinism, switches, COM."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.model.com import info_nce
from ddavs_rt.model.ddavs import build_model

REPO = Path(__file__).resolve().parents[1]


def _cfg(name: str) -> ModelConfig:
    return load_config(REPO / "configs/model" / name, ModelConfig).model_copy(update={"input_size": 64})


def _params(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.randint(0, 256, (batch, 64, 64, 3), dtype=torch.uint8)
    audio = torch.randn(batch, 16000) * 0.1
    return frames, audio


@pytest.mark.parametrize("name", ["ddavs-tiny.yaml", "ablation/tiny-avam.yaml", "ablation/tiny-baseline.yaml"])
def test_gradients_reach_every_trainable_parameter(name: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = _cfg(name)
    cfg = cfg.model_copy(update={"visual": cfg.visual.model_copy(update={"drop_path": 0.0})})  # no dropped branches
    model = build_model(cfg).train()
    if model.bank_buffer is not None:
        model.bank_buffer.copy_(torch.randn_like(model.bank_buffer))  # a real bank: W_K, W_V get gradients
    frames, audio = _inputs()
    out = model.forward_train(frames, audio, audio + 0.01 * torch.randn_like(audio))
    loss = out["logits"].sigmoid().mean()
    if out["con_loss"] is not None:
        loss = loss + out["con_loss"]
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    if model.bank_buffer is not None:
        assert model.bank_buffer.grad is None and not model.bank_buffer.requires_grad
        assert all(p is not model.bank_buffer for p in model.parameters())
        assert "aqm.refinement.bank" not in model.state_dict()  # the bank travels in its own file


def test_forward_train_reports_queries_and_con_loss_only_when_asked() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("ddavs-tiny.yaml")).eval()
    frames, audio = _inputs()
    with torch.no_grad():
        plain = model.forward_train(frames, audio, None)
        with_aug = model.forward_train(frames, audio, audio.flip(-1))
        no_com = build_model(_cfg("ablation/tiny-aqm.yaml")).eval().forward_train(frames, audio, audio)
    assert plain["con_loss"] is None and no_com["con_loss"] is None
    assert with_aug["con_loss"].ndim == 0 and float(with_aug["con_loss"]) > 0
    assert plain["queries"].shape == (2, 5, 128)
    torch.testing.assert_close(plain["logits"], model(frames, audio))


def test_eval_mode_is_deterministic_and_uses_the_audio() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("ddavs-tiny.yaml")).eval()
    frames, audio = _inputs()
    with torch.no_grad():
        first, second = model(frames, audio), model(frames, audio)
        other_audio = model(frames, torch.randn_like(audio))
    assert torch.equal(first, second)
    assert not torch.allclose(first, other_audio)


def test_the_bank_changes_the_queries() -> None:
    torch.manual_seed(0)
    model = build_model(_cfg("ddavs-tiny.yaml")).eval()
    _, audio = _inputs()
    with torch.no_grad():
        empty = model.audio_queries(audio)
        model.bank_buffer.copy_(torch.randn_like(model.bank_buffer))
        grounded = model.audio_queries(audio)
    assert not torch.allclose(empty, grounded)


def test_switching_modules_off_removes_their_parameters() -> None:
    full = build_model(_cfg("ablation/tiny-full.yaml"))
    baseline = build_model(_cfg("ablation/tiny-baseline.yaml"))
    aqm = build_model(_cfg("ablation/tiny-aqm.yaml"))
    aqm_com = build_model(_cfg("ablation/tiny-aqm-com.yaml"))
    avam = build_model(_cfg("ablation/tiny-avam.yaml"))
    no_refine = build_model(_cfg("ddavs-tiny.yaml").model_copy(update={"aqm": _cfg("ddavs-tiny.yaml").aqm.model_copy(update={"bank_refinement": False})}))
    assert baseline.aqm is None and baseline.com is None and _params(baseline.avam) == 0 and baseline.fusion is not None
    assert _params(aqm.aqm) > 0 and aqm.com is None and aqm.bank_buffer is not None
    assert _params(aqm_com) - _params(aqm) == _params(aqm_com.com) > 0
    assert avam.aqm is None and avam.fusion is None and _params(avam.avam) > 0
    d = 128
    assert _params(full.aqm) - _params(no_refine.aqm) == 3 * d * d + 2 * d  # W_Q, W_K, W_V + LN
    assert no_refine.bank_buffer is None
    # AVAM at stages 3 and 4 only: blocks exist exactly there
    assert [type(b).__name__ for b in full.avam] == ["Identity", "Identity", "CrossAlignmentBlock", "CrossAlignmentBlock"]
    pos1 = build_model(_cfg("ablation/tiny-pos-1.yaml"))
    assert [type(b).__name__ for b in pos1.avam] == ["CrossAlignmentBlock", "Identity", "Identity", "Identity"]
    # the shared parts are the same size in every row
    for model in (baseline, aqm, avam, full):
        assert _params(model.visual) == _params(full.visual) and _params(model.decoder) == _params(full.decoder)


def test_con_loss_prefers_matching_distinct_queries() -> None:
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(3, 5, 16), dim=-1)
    matched = info_nce(z, z, 0.1)
    shuffled = info_nce(z, z[:, torch.tensor([1, 2, 3, 4, 0])], 0.1)
    assert float(matched) < float(shuffled)
    # orthogonal, matched slots: the loss approaches its floor 0 as the temperature shrinks
    eye = torch.eye(5).expand(2, 5, 5)
    assert float(info_nce(eye, eye, 0.01)) < 1e-6
    assert float(info_nce(eye, eye, 1.0)) == pytest.approx(-math.log(math.e / (math.e + 4)), rel=1e-5)

"""Segmentation losses: hand-checkable values, valid-frame masking, multi-class counterparts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddavs_rt.config import LossWeights
from ddavs_rt.train.losses import SegmentationLoss, dice_loss, focal_loss, iou_loss

torch.set_num_threads(1)


def test_perfect_prediction_has_near_zero_dice_and_iou_and_wrong_one_near_one() -> None:
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    good = (target * 40 - 20).unsqueeze(1)  # confident and right
    bad = -good
    assert dice_loss(good, target) < 1e-3 and iou_loss(good, target) < 1e-3
    assert dice_loss(bad, target) > 0.9 and iou_loss(bad, target) > 0.9


def test_dice_matches_hand_computation() -> None:
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # inter = 0.5, sum p = 2, sum y = 1: 1 - (1 + 1) / (3 + 1) = 0.5
    assert math.isclose(float(dice_loss(logits, target)), 0.5, rel_tol=1e-6)
    # iou: inter 0.5, union = 2 + 1 - 0.5 = 2.5: 1 - 1.5 / 3.5
    assert math.isclose(float(iou_loss(logits, target)), 1 - 1.5 / 3.5, rel_tol=1e-6)


def test_focal_down_weights_easy_pixels_and_balances_classes() -> None:
    y = torch.ones(1, 1, 1)
    easy = focal_loss(torch.full((1, 1, 1, 1), 4.0), y, alpha=0.25, gamma=2.0)
    hard = focal_loss(torch.full((1, 1, 1, 1), -4.0), y, alpha=0.25, gamma=2.0)
    bce_easy = F.binary_cross_entropy_with_logits(torch.tensor(4.0), torch.tensor(1.0))
    p = torch.sigmoid(torch.tensor(4.0))
    assert math.isclose(float(easy), float(0.25 * (1 - p) ** 2 * bce_easy), rel_tol=1e-5)
    assert hard > 100 * easy


def test_invalid_frames_do_not_count() -> None:
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1
    logits = torch.randn(2, 1, 4, 4)
    loss = SegmentationLoss(LossWeights(focal=1.0))
    only_first = loss(logits[:1], target[:1])
    masked = loss(logits, target, mask_valid=torch.tensor([True, False]))
    for name in ("ce", "dice", "iou", "focal", "total"):
        assert torch.allclose(only_first[name], masked[name]), name
    changed = logits.clone()
    changed[1] = 100.0  # an invalid frame's prediction must not move the loss
    assert torch.allclose(loss(changed, target, torch.tensor([True, False]))["total"], masked["total"])


def test_no_valid_frame_gives_zero_with_gradient_and_keeps_con() -> None:
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    out = SegmentationLoss(LossWeights(con=0.5))(logits, torch.zeros(2, 4, 4), torch.tensor([False, False]), torch.tensor(2.0))
    assert float(out["ce"].detach()) == 0.0 and math.isclose(float(out["total"].detach()), 1.0)
    out["total"].backward()
    assert logits.grad is not None


def test_total_is_the_weighted_sum() -> None:
    w = LossWeights(ce=1.0, dice=2.0, iou=0.5, focal=3.0, con=0.1)
    logits = torch.randn(3, 1, 6, 6)
    target = (torch.rand(3, 6, 6) > 0.5).float()
    out = SegmentationLoss(w)(logits, target, con_loss=torch.tensor(1.5))
    expected = out["ce"] + 2 * out["dice"] + 0.5 * out["iou"] + 3 * out["focal"] + 0.1 * 1.5
    assert torch.allclose(out["total"], expected)


def test_multiclass_uses_cross_entropy_over_classes() -> None:
    target = torch.randint(0, 4, (2, 5, 5))
    logits = torch.randn(2, 4, 5, 5)
    out = SegmentationLoss(LossWeights(focal=1.0))(logits, target)
    assert torch.allclose(out["ce"], F.cross_entropy(logits, target))
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 50
    best = SegmentationLoss(LossWeights(focal=1.0))(perfect, target)
    assert best["dice"] < 0.02 and best["iou"] < 0.02 and best["focal"] < 1e-6
    assert out["dice"] > 0.3

"""Segmentation losses: hand-checkable values, valid-frame masking, multi-class counterparts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddavs_rt.config import LossWeights
from ddavs_rt.train.losses import IGNORE_INDEX, SegmentationLoss, dice_loss, focal_loss, iou_loss, segmentation_target

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


# ---------------------------------------------------------------- label 255: ignored pixels
# CAVP loss/losser.py: nn.CrossEntropyLoss(ignore_index=255), the mean over non-ignored pixels.
# The expected values below are the loss definitions (module docstring) worked by hand over the
# three pixels that remain of a 2x2 frame whose bottom-right pixel is labelled 255.

LN2, LN3 = math.log(2.0), math.log(3.0)
TERMS = ("ce", "dice", "iou", "focal")


def _binary_example(ignored_logit: float) -> tuple[torch.Tensor, torch.Tensor]:
    # p = sigmoid: 0.5, 0.75, 0.25 on the counted pixels
    logits = torch.tensor([[[[0.0, math.log(3.0)], [-math.log(3.0), ignored_logit]]]])
    target = torch.tensor([[[1, 0], [1, IGNORE_INDEX]]], dtype=torch.uint8)
    return logits, target


def test_binary_ignored_pixel_contributes_nothing_and_terms_match_the_definitions() -> None:
    loss = SegmentationLoss(LossWeights(ce=1.0, dice=1.0, iou=1.0, focal=1.0, con=0.0))
    logits, target = _binary_example(7.0)
    out = loss(logits, target)
    # BCE: ln 2 (y=1, p=.5), ln 4 (y=0, p=.75), ln 4 (y=1, p=.25); mean over 3 pixels
    assert math.isclose(float(out["ce"]), 5 * LN2 / 3, rel_tol=1e-6)
    # Dice: sum p y = .75, sum p = 1.5, sum y = 2: 1 - (1.5 + 1) / (3.5 + 1)
    assert math.isclose(float(out["dice"]), 4 / 9, rel_tol=1e-6)
    # IoU: inter .75, union 1.5 + 2 - .75 = 2.75: 1 - 1.75 / 3.75
    assert math.isclose(float(out["iou"]), 8 / 15, rel_tol=1e-6)
    # focal (alpha .25, gamma 2): .25*.5^2*ln2 + .75*.75^2*ln4 + .25*.75^2*ln4, mean over 3
    assert math.isclose(float(out["focal"]), 1.1875 * LN2 / 3, rel_tol=1e-6)
    for other in (-5.0, 0.0, 30.0):
        moved = loss(_binary_example(other)[0], target)
        for name in TERMS:
            assert math.isclose(float(moved[name]), float(out[name]), rel_tol=1e-6), (name, other)
    x = logits.clone().requires_grad_(True)
    loss(x, target)["total"].backward()
    assert x.grad is not None and float(x.grad[0, 0, 1, 1]) == 0.0 and bool((x.grad[0, 0, 0] != 0).all())


def _multiclass_example(ignored: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    # pixel logits: a [0,0,0] -> p (1/3,1/3,1/3); b [ln2,0,0] -> (1/2,1/4,1/4); c [0,ln2,0] -> (1/4,1/2,1/4)
    pixels = [[0.0, 0.0, 0.0], [LN2, 0.0, 0.0], [0.0, LN2, 0.0], ignored]
    logits = torch.tensor(pixels).T.reshape(1, 3, 2, 2)
    target = torch.tensor([[[0, 2], [1, IGNORE_INDEX]]], dtype=torch.uint8)
    return logits, target


def test_multiclass_ignored_pixel_contributes_nothing_and_terms_match_the_definitions() -> None:
    loss = SegmentationLoss(LossWeights(ce=1.0, dice=1.0, iou=1.0, focal=1.0, con=0.0))
    logits, target = _multiclass_example([9.0, -3.0, 1.0])
    out = loss(logits, target)
    # CE: -ln p_t = ln 3 (a, class 0), ln 4 (b, class 2), ln 2 (c, class 1); mean over 3
    assert math.isclose(float(out["ce"]), (LN3 + 3 * LN2) / 3, rel_tol=1e-6)
    # the official criterion on the same input (PyTorch's ignore_index is what CAVP calls)
    assert math.isclose(float(out["ce"]), float(F.cross_entropy(logits, target.long(), ignore_index=255)), rel_tol=1e-6)
    # Dice per class over a, b, c: class 0: 1 - (2/3 + 1)/(13/12 + 1 + 1) = 17/37;
    # class 1: 1 - (1 + 1)/(13/12 + 2) = 13/37; class 2: 1 - (1/2 + 1)/(5/6 + 2) = 8/17
    assert math.isclose(float(out["dice"]), (30 / 37 + 8 / 17) / 3, rel_tol=1e-6)
    # IoU: class 0 1 - (4/3)/(7/4 + 1) = 17/33; class 1 1 - (3/2)/(19/12 + 1) = 13/31; class 2 1 - (5/4)/(31/12) = 16/31
    assert math.isclose(float(out["iou"]), (17 / 33 + 29 / 31) / 3, rel_tol=1e-6)
    # focal: alpha_t .75 on background, .25 on classes: .75*(2/3)^2 ln3 + .25*(3/4)^2 ln4 + .25*(1/2)^2 ln2
    assert math.isclose(float(out["focal"]), (LN3 / 3 + 11 * LN2 / 32) / 3, rel_tol=1e-6)
    for other in ([-4.0, 8.0, 0.0], [0.0, 0.0, 50.0]):
        moved = loss(_multiclass_example(other)[0], target)
        for name in TERMS:
            assert math.isclose(float(moved[name]), float(out[name]), rel_tol=1e-6), (name, other)
    x = logits.clone().requires_grad_(True)
    loss(x, target)["total"].backward()
    assert x.grad is not None and bool((x.grad[0, :, 1, 1] == 0).all())


def test_a_frame_that_is_all_ignored_counts_as_no_ground_truth() -> None:
    loss = SegmentationLoss(LossWeights(focal=1.0))
    logits = torch.randn(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    target[1] = IGNORE_INDEX
    alone = loss(logits[:1], target[:1])
    both = loss(logits, target)
    for name in (*TERMS, "total"):
        assert torch.allclose(both[name], alone[name]), name
    x = logits.clone().requires_grad_(True)
    nothing = loss(x, torch.full_like(target, IGNORE_INDEX))
    assert float(nothing["total"].detach()) == 0.0  # not NaN, as a mean over zero pixels would be
    nothing["total"].backward()
    assert x.grad is not None and float(x.grad.abs().sum()) == 0.0


def test_binary_target_takes_the_ignore_marks_of_the_class_map() -> None:
    masks = torch.tensor([[[1, 0], [0, 0]]], dtype=torch.uint8)  # the loader writes 255 as background here
    semantic = torch.tensor([[[9, 0], [IGNORE_INDEX, 0]]], dtype=torch.uint8)
    assert segmentation_target(masks, semantic, 1).tolist() == [[[1, 0], [IGNORE_INDEX, 0]]]
    assert segmentation_target(masks, None, 1).tolist() == masks.tolist()
    assert segmentation_target(masks, semantic, 22) is semantic

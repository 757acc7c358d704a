"""AVSBench J / F and AVS-Semantic metrics against hand-computed cases and a loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddavs_rt.metrics import (
    BINARY_PROTOCOL,
    SEMANTIC_DATASET_LEVEL,
    SEMANTIC_PER_FRAME,
    BinaryMetricAccumulator,
    SemanticMetricAccumulator,
    avsbench_f,
    avsbench_j,
)

torch.set_num_threads(1)

BIG = 10.0  # sigmoid(10) = 0.99995, sigmoid(-10) = 0.0000454: between the 2nd and the 254th threshold


def logits_of(pred: list[list[int]]) -> np.ndarray:
    """{0,1} prediction -> confident logits [H, W]."""
    return np.where(np.array(pred) > 0, BIG, -BIG).astype(np.float32)


def f_beta(p: float, r: float) -> float:
    return 1.3 * p * r / (0.3 * p + r)


# Frame A: GT top row, prediction top-left only. inter 1, union 2.
MASK_A = np.array([[1, 1], [0, 0]], dtype=np.float32)
LOGITS_A = logits_of([[1, 0], [0, 0]])
# Threshold 0 predicts all 4 pixels (P 0.5, R 1); mid thresholds predict 1 (P 1, R 0.5);
# the last threshold (1.0 in float32) predicts none (F NaN -> 0).
F_A = max(f_beta(0.5, 1.0), f_beta(1.0, 0.5))
# Frame E: empty GT, one pixel predicted foreground: J = share predicted background = 3/4.
MASK_E = np.zeros((2, 2), dtype=np.float32)
LOGITS_E = logits_of([[1, 0], [0, 0]])


def test_j_and_f_of_a_partial_prediction_match_hand_computation() -> None:
    assert avsbench_j(LOGITS_A[None], MASK_A[None]) == pytest.approx(0.5, abs=1e-6)
    assert F_A == pytest.approx(0.8125)
    assert avsbench_f(LOGITS_A[None], MASK_A[None]) == pytest.approx(0.8125, rel=1e-6)


def test_empty_ground_truth_frame_scores_background_share_in_j_and_is_skipped_in_f() -> None:
    logits = np.stack([LOGITS_A, LOGITS_E])
    masks = np.stack([MASK_A, MASK_E])
    assert avsbench_j(LOGITS_E[None], MASK_E[None]) == pytest.approx(0.75, abs=1e-6)
    assert avsbench_j(logits, masks) == pytest.approx((0.5 + 0.75) / 2, abs=1e-6)
    # F averages only frame A's curve: the empty frame neither adds nor dilutes.
    assert avsbench_f(logits, masks) == pytest.approx(0.8125, rel=1e-6)


def test_all_empty_batch_gives_f_zero_and_j_from_background() -> None:
    logits = np.stack([logits_of([[0, 0], [0, 0]]), logits_of([[1, 1], [0, 0]])])
    masks = np.zeros((2, 2, 2), dtype=np.float32)
    assert avsbench_f(logits, masks) == 0.0
    assert avsbench_j(logits, masks) == pytest.approx((1.0 + 0.5) / 2, abs=1e-6)


def test_perfect_prediction_scores_one() -> None:
    mask = np.array([[[0, 1, 1], [0, 1, 0], [0, 0, 0]]], dtype=np.float32)
    logits = np.where(mask > 0, BIG, -BIG).astype(np.float32)
    assert avsbench_j(logits, mask) == pytest.approx(1.0, abs=1e-6)
    assert avsbench_f(logits, mask) == pytest.approx(1.0, abs=1e-6)


def test_inverted_prediction_has_j_zero_but_f_from_the_zero_threshold() -> None:
    mask = np.array([[[1, 1, 0], [0, 0, 0], [0, 0, 0]]], dtype=np.float32)  # 2 of 9 pixels
    logits = np.where(mask > 0, -BIG, BIG).astype(np.float32)
    assert avsbench_j(logits, mask) == pytest.approx(0.0, abs=1e-9)
    # Threshold 0 predicts every pixel: P = 2/9, R = 1; every other threshold has tp = 0.
    assert avsbench_f(logits, mask) == pytest.approx(f_beta(2 / 9, 1.0), rel=1e-6)


def loop_reference_f(logits: np.ndarray, masks: np.ndarray) -> float:
    """The protocol written out naively: every threshold, every frame, one comparison each."""
    prob = torch.sigmoid(torch.from_numpy(logits.astype(np.float32)))
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    total, frames = torch.zeros(255), 0
    for i in range(prob.shape[0]):
        gt = torch.from_numpy(masks[i].astype(np.float32))
        if float(gt.mean()) == 0.0:
            continue
        curve = torch.zeros(255)
        for k in range(255):
            y = (prob[i] >= thresholds[k]).float()
            tp = (y * gt).sum()
            p, r = tp / (y.sum() + 1e-20), tp / (gt.sum() + 1e-20)
            value = (1 + 0.3) * p * r / (0.3 * p + r)
            curve[k] = 0.0 if torch.isnan(value) else value
        total += curve
        frames += 1
    return float((total / frames).max()) if frames else 0.0


def loop_reference_j(logits: np.ndarray, masks: np.ndarray) -> float:
    values = []
    for lg, gt in zip(logits, masks):
        pred = (1 / (1 + np.exp(-lg.astype(np.float64))) > 0.5).astype(np.float64)
        if gt.sum() == 0:
            values.append(((1 - pred) * (1 - gt)).sum() / (gt.size + 1e-7))
        else:
            values.append((pred * gt).sum() / (np.maximum(pred, gt).sum() + 1e-7))
    return float(np.mean(values))


def test_vectorised_metrics_match_a_straightforward_loop_on_random_data() -> None:
    rng = np.random.default_rng(0)
    for trial in range(3):
        logits = (rng.normal(size=(5, 8, 8)) * 3).astype(np.float32)
        masks = (rng.random((5, 8, 8)) < 0.3).astype(np.float32)
        masks[trial] = 0  # an empty-GT frame in each batch
        logits[0, 0, 0] = 40.0  # saturates to 1.0 in float32: meets the last threshold
        assert avsbench_f(logits, masks) == pytest.approx(loop_reference_f(logits, masks), abs=1e-6)
        assert avsbench_j(logits, masks) == pytest.approx(loop_reference_j(logits, masks), abs=1e-6)


def test_f_depends_on_the_batch_size() -> None:
    mask_b = np.array([[1, 1], [0, 0]], dtype=np.float32)
    logits_b = logits_of([[0, 0], [1, 1]])  # inverted: F only at threshold 0 = f(0.5, 1)
    logits = np.stack([LOGITS_A, logits_b])
    masks = np.stack([MASK_A, mask_b])

    per_frame = BinaryMetricAccumulator(batch_size=1)
    per_pair = BinaryMetricAccumulator(batch_size=2)
    for acc in (per_frame, per_pair):
        acc.add(logits, masks)
    low = f_beta(0.5, 1.0)
    # batch 1: mean of each frame's own maximum; batch 2: maximum of the mean curve.
    assert per_frame.result().f == pytest.approx((0.8125 + low) / 2, rel=1e-6)
    assert per_pair.result().f == pytest.approx(max(low, 0.8125 / 2), rel=1e-6)
    assert per_frame.result().f > per_pair.result().f + 0.1
    assert per_frame.result().batch_size == 1 and per_pair.result().batch_size == 2
    # J is a per-frame mean, so with equal batches it does not change.
    assert per_frame.result().j == pytest.approx(per_pair.result().j, abs=1e-6)


def test_accumulator_batches_frames_in_order_with_a_smaller_last_batch() -> None:
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(7, 6, 6)) * 2).astype(np.float32)
    masks = (rng.random((7, 6, 6)) < 0.4).astype(np.float32)
    masks[5] = 0
    acc = BinaryMetricAccumulator(batch_size=3)
    acc.add(logits[:2], masks[:2])  # frames arrive in uneven pieces
    acc.add(logits[2], masks[2])  # one [H, W] frame
    acc.add(logits[3:], masks[3:])
    result = acc.result()
    batches = [slice(0, 3), slice(3, 6), slice(6, 7)]
    expected_j = np.mean([avsbench_j(logits[b], masks[b]) for b in batches])
    expected_f = np.mean([avsbench_f(logits[b], masks[b]) for b in batches])
    assert result.num_frames == 7 and result.num_batches == 3
    assert result.j == pytest.approx(expected_j, abs=1e-6)
    assert result.f == pytest.approx(expected_f, abs=1e-6)
    assert result.jf == pytest.approx((expected_j + expected_f) / 2, abs=1e-6)
    as_dict = result.to_dict()
    assert as_dict["protocol"] == BINARY_PROTOCOL and as_dict["batch_size"] == 3


def test_per_tag_accumulators_see_only_their_frames() -> None:
    perfect_mask = np.array([[[1, 0], [0, 0]]], dtype=np.float32)
    perfect = np.where(perfect_mask > 0, BIG, -BIG).astype(np.float32)
    acc = BinaryMetricAccumulator(batch_size=4)
    acc.add(perfect, perfect_mask, tags=["single", "small"])
    acc.add(LOGITS_A[None], MASK_A[None], tags=["multi", "small", "small"])
    result = acc.result()
    assert set(result.per_tag) == {"single", "multi", "small"}
    assert result.per_tag["single"].j == pytest.approx(1.0, abs=1e-6)
    assert result.per_tag["multi"].j == pytest.approx(0.5, abs=1e-6)
    assert result.per_tag["small"].num_frames == 2
    assert result.per_tag["small"].j == pytest.approx(0.75, abs=1e-6)
    assert result.to_dict()["per_tag"]["multi"]["f"] == pytest.approx(0.8125, rel=1e-6)


def test_accumulator_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        BinaryMetricAccumulator().add(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


# Semantic hand case, 4 classes (class 3 never appears).
SEM_LABELS = np.array([[[0, 1], [1, 2]], [[0, 0], [0, 0]]])
SEM_PRED = np.array([[[0, 1], [2, 2]], [[0, 0], [0, 1]]])


def test_semantic_per_frame_protocol_matches_hand_computation() -> None:
    acc = SemanticMetricAccumulator(num_classes=4)
    acc.add(SEM_PRED, SEM_LABELS)
    result = acc.result(SEMANTIC_PER_FRAME)
    # frame 1: c0 iou 1 F 1; c1 iou 1/2 (P 1, R 1/2); c2 iou 1/2 (P 1/2, R 1)
    # frame 2: c0 iou 3/4 (P 1, R 3/4); c1 union 1, iou 0, F 0; c2 absent
    iou = [(1 + 0.75) / 2, (0.5 + 0) / 2, 0.5, 0.0]
    f = [(1 + f_beta(1, 0.75)) / 2, (f_beta(1, 0.5) + 0) / 2, f_beta(0.5, 1), 0.0]
    assert result.protocol == SEMANTIC_PER_FRAME
    assert result.class_counts == [2, 2, 1, 0]
    assert result.per_class_iou == pytest.approx(iou)
    assert result.per_class_f == pytest.approx(f)
    assert result.miou == pytest.approx(np.mean(iou))
    assert result.f == pytest.approx(np.mean(f))
    assert result.num_frames == 2


def test_semantic_dataset_level_protocol_matches_hand_computation() -> None:
    acc = SemanticMetricAccumulator(num_classes=4)
    acc.add(SEM_PRED[:1], SEM_LABELS[:1])
    acc.add(SEM_PRED[1:], SEM_LABELS[1:])
    result = acc.result(SEMANTIC_DATASET_LEVEL)
    # totals: c0 inter 4 pred 4 label 5; c1 inter 1 pred 2 label 2; c2 inter 1 pred 2 label 1
    iou = [4 / 5, 1 / 3, 1 / 2]
    f = [f_beta(1, 0.8), f_beta(0.5, 0.5), f_beta(0.5, 1)]
    assert result.protocol == SEMANTIC_DATASET_LEVEL
    assert result.per_class_iou[:3] == pytest.approx(iou)
    # CAVP's MIoU: inter / (eps + union) averaged over all num_classes, class 3 (never present)
    # scoring 0; ForegroundDetect's F: nanmean over classes, so class 3 (0 / 0) is left out
    assert result.miou == pytest.approx(np.mean(iou + [0.0]))
    assert result.f == pytest.approx(np.mean(f))
    assert result.to_dict()["protocol"] == SEMANTIC_DATASET_LEVEL


def test_semantic_scores_are_argmaxed_like_class_ids() -> None:
    scores = np.eye(4, dtype=np.float32)[SEM_PRED].transpose(0, 3, 1, 2)  # [N, C, H, W]
    by_scores, by_ids = SemanticMetricAccumulator(4), SemanticMetricAccumulator(4)
    by_scores.add(scores, SEM_LABELS)
    by_ids.add(SEM_PRED, SEM_LABELS)
    assert by_scores.result().to_dict() == by_ids.result().to_dict()
    with pytest.raises(ValueError, match="classes"):
        SemanticMetricAccumulator(3).add(scores, SEM_LABELS)

"""From an engine's logits to what is published: a class-id mask, classes present, live accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ddavs_rt.publish.schema import ClassInfo


@dataclass(slots=True)
class FrameResult:
    mask: np.ndarray  # uint8 [H, W] at the frame's size: class ids (binary: 0/1)
    classes: list[ClassInfo]
    encoding: str  # png-binary | png-class
    num_classes: int  # class ids including background


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray, axis: int = 0) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logits_to_result(
    logits: np.ndarray, frame_size: tuple[int, int], class_names: tuple[str, ...], threshold: float = 0.5
) -> FrameResult:
    """logits float32 [K, h, w] -> the mask at frame_size (H, W) and the classes present.

    K == 1: sigmoid probability resized (bilinear) to the frame, thresholded -> {0, 1}.
    K > 1: softmax over classes resized to the frame, argmax -> class ids.
    A class's score is its mean probability over the pixels assigned to it.
    """
    height, width = frame_size
    if logits.shape[0] == 1:
        prob = _sigmoid(logits[0]).astype(np.float32)  # [h, w]
        if prob.shape != (height, width):
            prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        mask = (prob > threshold).astype(np.uint8)  # [H, W] {0, 1}
        pixels = int(mask.sum())
        classes = []
        if pixels:
            name = class_names[1] if len(class_names) > 1 else "sounding"
            classes.append(ClassInfo(class_id=1, name=name, pixels=pixels, score=float(prob[mask == 1].mean())))
        return FrameResult(mask=mask, classes=classes, encoding="png-binary", num_classes=2)
    probs = _softmax(logits.astype(np.float32))  # [K, h, w]
    if probs.shape[1:] != (height, width):
        probs = np.stack([cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) for p in probs])
    mask = probs.argmax(axis=0).astype(np.uint8)  # [H, W]
    ids, counts = np.unique(mask, return_counts=True)
    classes = [
        ClassInfo(
            class_id=int(i),
            name=class_names[i] if i < len(class_names) else str(i),
            pixels=int(c),
            score=float(probs[i][mask == i].mean()),
        )
        for i, c in zip(ids, counts)
        if i != 0
    ]
    return FrameResult(mask=mask, classes=classes, encoding="png-class", num_classes=int(logits.shape[0]))


_STEP = (1.0 - 1e-10) / 254  # the official thresholds are linspace(0, 1 - 1e-10, 255)


def live_accuracy(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float | None]:
    """AVSBench J and F of one frame against a binary ground truth [H, W] (resized, nearest, to
    the logits' size). Logits: binary [1, h, w] or classes [K, h, w] (sounding = not background).

    The same rules as ddavs_rt.metrics.avsbench_j / avsbench_f for a batch of one frame (J of an
    empty truth = share of pixels predicted background; F is None for an empty truth (the official
    protocol skips such frames), max over 255 thresholds, beta^2 = 0.3), computed with one histogram instead of 255
    passes so that the live demo can afford it on every frame.
    """
    h, w = logits.shape[1:]
    gt = truth.astype(np.uint8)
    if gt.shape != (h, w):
        gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
    gt = gt.reshape(-1) > 0
    if logits.shape[0] == 1:
        prob = _sigmoid(logits[0].astype(np.float32)).reshape(-1)
    else:
        prob = 1.0 - _softmax(logits.astype(np.float32))[0].reshape(-1)
    pred = prob > 0.5
    if gt.any():
        j = float((pred & gt).sum() / ((pred | gt).sum() + 1e-7))
    else:
        j = float((~pred).sum() / (pred.size + 1e-7))
    if not gt.any():
        return j, None
    # thresholds at or below each pixel's probability (th_i = i * step): pixel counts for threshold
    # i iff i < level. The thresholds are evenly spaced, so the count is a floor, not a search.
    level = np.minimum((prob * (1.0 / _STEP)).astype(np.int64) + 1, 255)  # [N] in 1..255
    predicted = np.cumsum(np.bincount(level, minlength=256)[::-1])[::-1][1:]  # [255] pixels >= th_i
    hits = np.cumsum(np.bincount(level[gt], minlength=256)[::-1])[::-1][1:]  # [255] true positives
    precision = hits / (predicted + 1e-20)
    recall = hits / (gt.sum() + 1e-20)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (1.3 * precision * recall) / (0.3 * precision + recall)
    return j, float(np.nan_to_num(f).max())

"""From an engine's logits to what is published: a class-id mask, classes present, live accuracy
(scored by `ddavs_rt.metrics`, the one copy of the protocol)."""

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


def sounding_logits(logits: np.ndarray) -> np.ndarray:
    """[K, h, w] -> [h, w] logits of "sounding" (binary: the channel; classes: not background).

    For classes, sigmoid(logsumexp(x[1:]) - x[0]) = 1 - softmax(x)[0], the probability that a
    pixel is not background, so the binary metrics' sigmoid sees exactly that probability.
    """
    logits = logits.astype(np.float32)
    if logits.shape[0] == 1:
        return logits[0]
    rest = logits[1:]
    peak = rest.max(axis=0)
    return (peak + np.log(np.exp(rest - peak).sum(axis=0))) - logits[0]


def live_accuracy(logits: np.ndarray, truth: np.ndarray) -> tuple[float, float | None]:
    """AVSBench J and F of one frame against a binary ground truth [H, W] (resized, nearest, to
    the logits' size), by `ddavs_rt.metrics` (the TPAVI protocol code) on a batch of one frame,
    always its numpy form (the same numbers as the torch form, a twentieth of its CPU time here,
    and no second thread pool beside the engine's).
    Logits: binary [1, h, w] or classes [K, h, w] (sounding = not background). F is None for an
    empty truth: the official protocol skips such frames.
    """
    from ddavs_rt.metrics import avsbench_f_numpy, avsbench_j_numpy

    h, w = logits.shape[1:]
    gt = truth.astype(np.uint8)
    if gt.shape != (h, w):
        gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_NEAREST)
    gt = (gt > 0).astype(np.float32)[None]  # [1, h, w]
    frame = sounding_logits(logits)[None]  # [1, h, w]
    j = avsbench_j_numpy(frame, gt)
    return j, (avsbench_f_numpy(frame, gt) if gt.any() else None)

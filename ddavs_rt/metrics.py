"""Audio-visual segmentation metrics, computed exactly as the public benchmarks compute them.

Binary (AVSBench S4 / MS3, SynthAVS binary masks), the TPAVI protocol:
- J (mask IoU): `sigmoid(logits) > 0.5`; per frame inter / union, except that a frame whose
  ground truth is empty scores the share of pixels predicted background; batch J is the mean over
  the batch's frames of `inter / (union + 1e-7)`.
- F (beta^2 = 0.3): on `sigmoid(logits)`, 255 thresholds `linspace(0, 1 - 1e-10, 255)`; per frame
  precision and recall curves with a 1e-20 epsilon, NaN -> 0; frames with empty ground truth are
  skipped; the curves are averaged over the batch's frames and the batch F is their maximum
  (0 when every frame was skipped).
- Dataset figures are the mean of the batch figures, so F depends on the batch size: every result
  carries the batch size it was computed with.

The reference computes in float32 torch (sigmoid, thresholds, ratios); so does this module, so a
pixel sitting exactly on a threshold is counted the same way.

Semantic (AVS-Semantic, VPO, SynthAVS class masks), two protocols, each named in its result:
- `avss-per-frame` (the AVSBench-semantic test): per frame, argmax prediction, per-class
  intersection / prediction / label areas; IoU = inter / union and F from P = inter / area_pred,
  R = inter / area_gt (no threshold sweep); a class counts in a frame where its union > 0; per-class
  sums over frames divided by the counts, a class never present scores 0, then the mean over all
  `num_classes` classes (background included) is the dataset figure.
- `dataset-level` (the CAVP / VPO code, `utils/eval_utils.py` MIoU and ForegroundDetect):
  intersections, unions and areas are summed over the whole dataset before dividing; mIoU is
  inter / (eps + union) averaged over all `num_classes` classes (a class never seen scores 0), F
  (beta^2 = 0.3) is averaged over the classes whose total union is > 0 (CAVP's nanmean). Ignored
  pixels (label 255 in VPO) are passed as -1 and count in no area.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

try:
    import torch
except ImportError:  # the torch-free runtime install: the binary J / F below fall back to numpy
    torch = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

BINARY_PROTOCOL = "avsbench-tpavi"
SEMANTIC_PER_FRAME = "avss-per-frame"
SEMANTIC_DATASET_LEVEL = "dataset-level"

F_BETA2 = 0.3
F_THRESHOLDS = 255
J_EPS = 1e-7
F_EPS = 1e-20
SEMANTIC_IOU_EPS = 2.220446049250313e-16  # float64 machine epsilon, as in the reference


def _as_float32(array: Any) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _check_batch(logits: torch.Tensor, masks: torch.Tensor) -> None:
    if logits.ndim != 3 or logits.shape != masks.shape:
        raise ValueError(
            f"expected logits and masks of one shape [N, H, W], got {tuple(logits.shape)} and {tuple(masks.shape)}"
        )


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return (np.float32(1) / (np.float32(1) + np.exp(-x, dtype=np.float32))).astype(np.float32)


def _np_avsbench_j(logits: np.ndarray, masks: np.ndarray) -> float:
    """avsbench_j in numpy float32, for an install without torch (the same rule, line by line)."""
    frame_j = _np_frame_j(logits, masks)
    return float(np.sum(frame_j, dtype=np.float32) / frame_j.shape[0])


def _np_frame_j(logits: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per-frame `inter / (union + eps)` [N] float32 of the TPAVI rule, in numpy."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    masks = np.ascontiguousarray(masks, dtype=np.float32)
    if logits.ndim != 3 or logits.shape != masks.shape:
        raise ValueError(f"expected logits and masks of one shape [N, H, W], got {logits.shape} and {masks.shape}")
    n, h, w = logits.shape
    if n == 0:
        raise ValueError("avsbench_j needs at least one frame")
    pred = (_np_sigmoid(logits) > 0.5).astype(np.float32)
    inter = (pred * masks).sum(axis=(1, 2), dtype=np.float32)
    union = np.maximum(pred, masks).sum(axis=(1, 2), dtype=np.float32)
    empty = masks.sum(axis=(1, 2)) == 0
    inter = np.where(empty, ((1 - masks) * (1 - pred)).sum(axis=(1, 2), dtype=np.float32), inter)
    union = np.where(empty, np.float32(h * w), union)
    return (inter / (union + np.float32(J_EPS))).astype(np.float32)


def _np_avsbench_f_curves(logits: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """avsbench_f_curves in numpy float32, for an install without torch."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    masks = np.ascontiguousarray(masks, dtype=np.float32)
    if logits.ndim != 3 or logits.shape != masks.shape:
        raise ValueError(f"expected logits and masks of one shape [N, H, W], got {logits.shape} and {masks.shape}")
    n = logits.shape[0]
    prob = _np_sigmoid(logits).reshape(n, -1)
    gt = masks.reshape(n, -1) > 0
    thresholds = np.linspace(0, 1 - 1e-10, F_THRESHOLDS).astype(np.float32)
    curves = np.zeros((n, F_THRESHOLDS), dtype=np.float32)
    counted = masks.reshape(n, -1).mean(axis=1) != 0
    for i in range(n):
        if not counted[i]:
            continue
        sorted_all, sorted_fg = np.sort(prob[i]), np.sort(prob[i][gt[i]])
        predicted = (sorted_all.size - np.searchsorted(sorted_all, thresholds, side="left")).astype(np.float32)
        tp = (sorted_fg.size - np.searchsorted(sorted_fg, thresholds, side="left")).astype(np.float32)
        precision = tp / (predicted + np.float32(F_EPS))
        recall = tp / (np.float32(gt[i].sum()) + np.float32(F_EPS))
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + np.float32(F_BETA2)) * precision * recall / (np.float32(F_BETA2) * precision + recall)
        curves[i] = np.nan_to_num(f, nan=0.0)
    return curves, counted


def avsbench_j(logits: Any, masks: Any) -> float:
    """Batch J (mask IoU) of logits [N, H, W] against {0, 1} masks [N, H, W], TPAVI rule."""
    if torch is None:
        return _np_avsbench_j(logits, masks)
    frame_j = _frame_j(logits, masks)
    return float(torch.sum(frame_j) / frame_j.shape[0])


def avsbench_frame_j(logits: Any, masks: Any) -> np.ndarray:
    """Per-frame J [N] float32 (`inter / (union + 1e-7)`, TPAVI rule): batch J is their mean."""
    if torch is None:
        return _np_frame_j(logits, masks)
    return _frame_j(logits, masks).numpy()


def _frame_j(logits: Any, masks: Any) -> torch.Tensor:
    logits_t, masks_t = _as_float32(logits), _as_float32(masks)
    _check_batch(logits_t, masks_t)
    n, h, w = logits_t.shape
    if n == 0:
        raise ValueError("avsbench_j needs at least one frame")
    pred = (torch.sigmoid(logits_t) > 0.5).float()  # [N, H, W]
    inter = (pred * masks_t).sum(dim=(1, 2))  # [N]
    union = torch.maximum(pred, masks_t).sum(dim=(1, 2))  # [N]
    empty = masks_t.sum(dim=(1, 2)) == 0  # [N]
    inter_background = ((1 - masks_t) * (1 - pred)).sum(dim=(1, 2))  # [N]
    inter = torch.where(empty, inter_background, inter)
    union = torch.where(empty, torch.full_like(union, float(h * w)), union)
    return inter / (union + J_EPS)  # [N]


def avsbench_f_curves(logits: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame F curves [N, 255] and a bool [N] telling which frames count (non-empty GT).

    Counting `p >= th` for all thresholds at once: sort the probabilities and binary-search each
    threshold, which gives the same counts as comparing every pixel with every threshold.
    """
    if torch is None:
        return _np_avsbench_f_curves(logits, masks)
    logits_t, masks_t = _as_float32(logits), _as_float32(masks)
    _check_batch(logits_t, masks_t)
    n = logits_t.shape[0]
    prob = torch.sigmoid(logits_t).reshape(n, -1)  # [N, P]
    gt = masks_t.reshape(n, -1) > 0  # [N, P]
    thresholds = torch.linspace(0, 1 - 1e-10, F_THRESHOLDS)  # [255] float32, like the reference
    curves = torch.zeros(n, F_THRESHOLDS, dtype=torch.float32)
    counted = (masks_t.reshape(n, -1).mean(dim=1) != 0).numpy()
    for i in range(n):
        if not counted[i]:
            continue
        sorted_all, _ = torch.sort(prob[i])  # [P]
        sorted_fg, _ = torch.sort(prob[i][gt[i]])  # [P_fg]
        predicted = (sorted_all.numel() - torch.searchsorted(sorted_all, thresholds, right=False)).float()  # [255]
        tp = (sorted_fg.numel() - torch.searchsorted(sorted_fg, thresholds, right=False)).float()  # [255]
        precision = tp / (predicted + F_EPS)
        recall = tp / (float(gt[i].sum()) + F_EPS)
        f = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall)
        curves[i] = torch.nan_to_num(f, nan=0.0)
    return curves.numpy(), counted


def avsbench_j_numpy(logits: np.ndarray, masks: np.ndarray) -> float:
    """avsbench_j in numpy float32 whether or not torch is installed: the streaming runtime scores
    one frame at a time on its scheduler thread, where torch's sort/searchsorted cost about 20x
    the numpy code and wake torch's own thread pool beside the engine's (docs/results/batching.md)."""
    return _np_avsbench_j(logits, masks)


def avsbench_f_numpy(logits: np.ndarray, masks: np.ndarray) -> float:
    """avsbench_f in numpy float32 whether or not torch is installed (see avsbench_j_numpy)."""
    curves, counted = _np_avsbench_f_curves(logits, masks)
    if not counted.any():
        return 0.0
    return float((curves[counted].sum(axis=0, dtype=np.float32) / int(counted.sum())).max())


def avsbench_f(logits: Any, masks: Any) -> float:
    """Batch F-measure (beta^2 = 0.3) of logits [N, H, W] against {0, 1} masks, TPAVI rule."""
    if torch is None:
        return avsbench_f_numpy(logits, masks)
    curves, counted = avsbench_f_curves(logits, masks)
    if not counted.any():
        return 0.0
    mean_curve = torch.from_numpy(curves[counted]).sum(dim=0) / int(counted.sum())  # [255]
    return float(mean_curve.max())


# --------------------------------------------------------------------------------------------
# Binary: dataset accumulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinaryMetrics:
    """Dataset J, F and J&F under the TPAVI protocol, with the batch size they depend on."""

    j: float
    f: float
    jf: float
    batch_size: int
    num_frames: int
    num_batches: int
    protocol: str = BINARY_PROTOCOL
    per_tag: dict[str, "BinaryMetrics"] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_tag"] = {tag: metrics.to_dict() for tag, metrics in self.per_tag.items()}
        return out


class _BatchedFrames:
    """Frames in arrival order, cut into batches of `batch_size`; keeps one figure pair per batch."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batch_j: list[float] = []
        self.batch_f: list[float] = []
        self.num_frames = 0
        self._pending_logits: list[np.ndarray] = []  # each [H, W]
        self._pending_masks: list[np.ndarray] = []

    def add(self, logits: np.ndarray, masks: np.ndarray) -> None:
        for frame_logits, frame_mask in zip(logits, masks):
            self._pending_logits.append(frame_logits)
            self._pending_masks.append(frame_mask)
            self.num_frames += 1
            if len(self._pending_logits) == self.batch_size:
                j, f = self._score_pending()
                self.batch_j.append(j)
                self.batch_f.append(f)
                self._pending_logits, self._pending_masks = [], []

    def _score_pending(self) -> tuple[float, float]:
        logits = np.stack(self._pending_logits)  # [B, H, W]
        masks = np.stack(self._pending_masks)
        return avsbench_j(logits, masks), avsbench_f(logits, masks)

    def figures(self) -> tuple[list[float], list[float]]:
        """Batch figures so far, the trailing partial batch included (without closing it)."""
        js, fs = list(self.batch_j), list(self.batch_f)
        if self._pending_logits:
            j, f = self._score_pending()
            js.append(j)
            fs.append(f)
        return js, fs

    def result(self) -> BinaryMetrics:
        js, fs = self.figures()
        j = float(np.mean(js)) if js else 0.0
        f = float(np.mean(fs)) if fs else 0.0
        return BinaryMetrics(j=j, f=f, jf=(j + f) / 2, batch_size=self.batch_size, num_frames=self.num_frames, num_batches=len(js))


class BinaryMetricAccumulator:
    """Takes frames in order, scores them in batches of `batch_size` frames (the last batch may be
    smaller) and reports the mean of the batch figures, overall and per tag.

    The TPAVI test script flattens a loader batch of B clips x 5 frames into one metric call, so a
    batch of B clips is `batch_size = 5 * B` here. Each tag has its own batching over the frames
    that carry it.
    """

    def __init__(self, batch_size: int = 4) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._all = _BatchedFrames(batch_size)
        self._tags: dict[str, _BatchedFrames] = {}

    def add(self, logits: Any, masks: Any, tags: Iterable[str] = ()) -> None:
        """Add frames: logits [N, H, W] (or one [H, W]) and {0, 1} masks of the same shape; `tags`
        apply to every frame of this call (a clip's subsets: "single", "multi", "off-screen"...)."""
        logits_np = _to_numpy(logits, np.float32)
        masks_np = _to_numpy(masks, np.float32)
        if logits_np.ndim == 2:
            logits_np, masks_np = logits_np[None], masks_np[None]
        if logits_np.ndim != 3 or logits_np.shape != masks_np.shape:
            raise ValueError(
                f"expected logits and masks of one shape [N, H, W], got {logits_np.shape} and {masks_np.shape}"
            )
        self._all.add(logits_np, masks_np)
        for tag in dict.fromkeys(tags):  # a tag given twice counts once
            self._tags.setdefault(tag, _BatchedFrames(self.batch_size)).add(logits_np, masks_np)

    @property
    def num_frames(self) -> int:
        return self._all.num_frames

    def result(self) -> BinaryMetrics:
        overall = self._all.result()
        per_tag = {tag: self._tags[tag].result() for tag in sorted(self._tags)}
        return BinaryMetrics(
            j=overall.j, f=overall.f, jf=overall.jf, batch_size=self.batch_size,
            num_frames=overall.num_frames, num_batches=overall.num_batches, per_tag=per_tag,
        )


def frame_figures(logits: Any, masks: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame J [N], F curves [N, 255] and F-counted flags [N] of logits / {0, 1} masks [N, H, W]:
    everything the TPAVI batch figures are made of."""
    logits_np = _to_numpy(logits, np.float32)
    masks_np = _to_numpy(masks, np.float32)
    curves, counted = avsbench_f_curves(logits_np, masks_np)
    return avsbench_frame_j(logits_np, masks_np), curves, counted


class TpaviBatchSums:
    """The TPAVI dataset figures as sums that add up across processes (validation sharded over
    the ranks of a process group; the all-reduce itself is the caller's).

    The figures are not additive over frames: batch F is the maximum over thresholds of the mean
    F curve of the batch's frames, and the dataset figures are means of batch figures, so a last
    partial batch weighs as much as a full one. What is additive is, per metric batch (frames cut
    every `batch_size` in the dataset's order, as `BinaryMetricAccumulator` cuts them): its frame
    count, the sum of its per-frame J, the count of its F-counted frames (non-empty ground truth)
    and the sum of their F curves. Each process adds its own frames at their position in the whole
    dataset's frame order; the element-wise sum over processes of `sums` [num_batches, 3 + 255]
    gives, through `metrics_from_sums`, the figures of one process scoring every frame.
    """

    COLUMNS = 3 + F_THRESHOLDS  # frames, sum of J, F-counted frames, sum of F curves [255]

    def __init__(self, batch_size: int, num_frames: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.sums = np.zeros((-(-num_frames // batch_size), self.COLUMNS), dtype=np.float64)

    def add(self, position: int, logits: Any, masks: Any) -> None:
        """Frames logits [N, H, W] / masks that are frames position .. position + N - 1 of the whole
        dataset (in the order one process would score them)."""
        self.add_figures(position, *frame_figures(logits, masks))

    def add_figures(self, position: int, frame_j: np.ndarray, curves: np.ndarray, counted: np.ndarray) -> None:
        """`add` with the frames' figures already computed (`frame_figures`)."""
        n = len(frame_j)
        if position < 0 or position + n > self.num_frames:
            raise ValueError(f"frames {position}..{position + n - 1} lie outside the dataset's {self.num_frames} frames")
        for i in range(n):
            row = self.sums[(position + i) // self.batch_size]
            row[0] += 1
            row[1] += float(frame_j[i])
            if counted[i]:
                row[2] += 1
                row[3:] += curves[i]

    @staticmethod
    def metrics_from_sums(sums: np.ndarray, batch_size: int) -> BinaryMetrics:
        """Dataset J / F / J&F (no per-tag figures) from the summed [num_batches, 3 + 255] sums."""
        frames = sums[:, 0]
        if (frames == 0).any():
            raise ValueError("a metric batch has no frames: the sums do not cover the dataset")
        batch_j = sums[:, 1] / frames
        counted = sums[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_curves = sums[:, 3:] / counted[:, None]
        batch_f = np.where(counted > 0, np.nan_to_num(mean_curves, nan=0.0).max(axis=1, initial=0.0), 0.0)
        j = float(batch_j.mean()) if len(frames) else 0.0
        f = float(batch_f.mean()) if len(frames) else 0.0
        return BinaryMetrics(
            j=j, f=f, jf=(j + f) / 2, batch_size=batch_size, num_frames=int(round(frames.sum())), num_batches=len(frames),
        )


def _to_numpy(array: Any, dtype: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


# --------------------------------------------------------------------------------------------
# Semantic
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SemanticMetrics:
    """mIoU and mean F over classes, with the per-class figures and the protocol that made them."""

    protocol: str
    miou: float
    f: float
    per_class_iou: list[float]
    per_class_f: list[float]
    class_counts: list[int]  # per-frame protocol: frames where the class's union > 0; else total union
    num_frames: int
    beta2: float = F_BETA2
    class_names: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SemanticMetricAccumulator:
    """Per-class areas of argmax predictions against class-id labels, frame by frame.

    `result(SEMANTIC_PER_FRAME)` is the AVSBench-semantic figure, `result(SEMANTIC_DATASET_LEVEL)`
    the CAVP/VPO one; both come from the same frames. Label values outside [0, num_classes) are
    left out of the label areas, as in the reference histogram: above the range (255) their
    pixels' predictions still count in the prediction areas, below it (-1) they do not.
    """

    def __init__(self, num_classes: int, beta2: float = F_BETA2, class_names: Sequence[str] | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background and at least one class), got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
        self.num_classes = num_classes
        self.beta2 = beta2
        self.class_names = list(class_names) if class_names is not None else None
        k = num_classes
        self.num_frames = 0
        # per-frame protocol sums
        self._iou_sum = np.zeros(k, dtype=np.float64)
        self._f_sum = np.zeros(k, dtype=np.float64)
        self._count = np.zeros(k, dtype=np.int64)
        # dataset-level totals
        self._inter = np.zeros(k, dtype=np.int64)
        self._pred = np.zeros(k, dtype=np.int64)
        self._label = np.zeros(k, dtype=np.int64)

    def add(self, prediction: Any, labels: Any) -> None:
        """prediction: class scores [N, C, H, W] (argmax over C) or class ids [N, H, W] (integers);
        labels: class ids [N, H, W]."""
        pred = _to_numpy(prediction, None)
        if pred.ndim == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"prediction has {pred.shape[1]} classes, the accumulator {self.num_classes}")
            pred = pred.argmax(axis=1)  # [N, H, W]
        elif pred.ndim != 3 or not np.issubdtype(pred.dtype, np.integer):
            raise ValueError(f"expected scores [N, C, H, W] or integer class ids [N, H, W], got {pred.dtype} {pred.shape}")
        labels_np = _to_numpy(labels, np.int64)
        if labels_np.shape != pred.shape:
            raise ValueError(f"labels {labels_np.shape} do not match predictions {pred.shape}")
        k = self.num_classes
        for frame_pred, frame_label in zip(pred.astype(np.int64), labels_np):
            frame_pred = np.where(frame_label >= 0, frame_pred, -1)  # negative label: ignored pixel
            area_pred = _histogram(frame_pred, k)
            area_label = _histogram(frame_label, k)
            area_inter = _histogram(frame_pred[frame_pred == frame_label], k)
            union = area_pred + area_label - area_inter
            iou = area_inter / (SEMANTIC_IOU_EPS + union)
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = area_inter / area_pred
                recall = area_inter / area_label
                f = (1 + self.beta2) * precision * recall / (self.beta2 * precision + recall)
            self._iou_sum += iou
            self._f_sum += np.nan_to_num(f, nan=0.0)
            self._count += union > 0
            self._inter += area_inter
            self._pred += area_pred
            self._label += area_label
            self.num_frames += 1

    def result(self, protocol: Literal["avss-per-frame", "dataset-level"] = SEMANTIC_PER_FRAME) -> SemanticMetrics:
        with np.errstate(divide="ignore", invalid="ignore"):
            if protocol == SEMANTIC_PER_FRAME:
                iou = np.nan_to_num(self._iou_sum / self._count, nan=0.0)
                f = np.nan_to_num(self._f_sum / self._count, nan=0.0)
                counts = self._count
                miou, mf = float(iou.mean()), float(f.mean())
            elif protocol == SEMANTIC_DATASET_LEVEL:
                union = self._pred + self._label - self._inter
                iou = self._inter / union
                precision = self._inter / self._pred
                recall = self._inter / self._label
                f = np.nan_to_num((1 + self.beta2) * precision * recall / (self.beta2 * precision + recall), nan=0.0)
                present = union > 0
                counts = union
                iou = np.nan_to_num(iou, nan=0.0)
                miou = float(iou.mean())  # every class, as CAVP's MIoU
                mf = float(f[present].mean()) if present.any() else 0.0
            else:
                raise ValueError(f"unknown semantic protocol {protocol!r}: use {SEMANTIC_PER_FRAME!r} or {SEMANTIC_DATASET_LEVEL!r}")
        return SemanticMetrics(
            protocol=protocol, miou=miou, f=mf, per_class_iou=[float(v) for v in iou],
            per_class_f=[float(v) for v in f], class_counts=[int(v) for v in counts],
            num_frames=self.num_frames, beta2=self.beta2, class_names=self.class_names,
        )


def _histogram(values: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of each class id in [0, num_classes); ids outside are not counted."""
    flat = values.ravel()
    flat = flat[(flat >= 0) & (flat < num_classes)]
    return np.bincount(flat, minlength=num_classes).astype(np.int64)

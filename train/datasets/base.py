"""A clip dataset as a list of file plans; each layout module only builds the plans.

A plan names every file a sample reads. Building it checks that each file exists, so a malformed
tree fails when the dataset is opened, with a one-line DataError naming the file, rather than
halfway through an epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ddavs_rt.errors import DataError

from .media import (
    Size, audio_windows, decode_audio, read_gray, read_mask_pil_1, read_palette_labels, read_palette_labels_pil, read_rgb,
    read_rgb_pil,
)
from .sample import ClipSample

logger = logging.getLogger(__name__)

IGNORE_LABEL = 255  # a class-map value that is no class: left out of losses and metrics


@dataclass(frozen=True)
class FramePlan:
    """The files of one frame. `image` None is a padding frame. Ground truth, first found wins:
    `mask` (binary PNG, > 0 is sounding) for the binary mask; `semantic` (class-id PNG, or the
    layout's own label PNG) or `semantic_rgb` (VOC palette PNG) for the class map, whose value 255
    marks ignored pixels (VPO). A frame with none of them has no ground truth (mask_valid False).
    `mask_rule`: "nonzero" (> 0 is sounding) or "pil-1" (PIL convert('1'), the official S4 rule)."""

    image: Path | None
    mask: Path | None = None
    mask_rule: str = "nonzero"
    semantic: Path | None = None
    semantic_rgb: Path | None = None

    @property
    def has_semantic(self) -> bool:
        return self.semantic is not None or self.semantic_rgb is not None

    @property
    def has_truth(self) -> bool:
        return self.mask is not None or self.has_semantic

    def files(self) -> list[Path]:
        paths = [self.image, self.mask, self.semantic, self.semantic_rgb]
        return [p for p in paths if p is not None]


@dataclass(frozen=True)
class ClipPlan:
    uid: str
    frames: tuple[FramePlan, ...]
    audio: tuple[Path, ...]  # several files are mixed (averaged; VPO sums its own way)
    tags: tuple[str, ...] = ()

    def files(self) -> list[Path]:
        return [*(p for f in self.frames for p in f.files()), *self.audio]


def require_files(plans: list[ClipPlan]) -> None:
    """Raise a one-line DataError for the first file of any plan that does not exist."""
    for plan in plans:
        for path in plan.files():
            if not path.is_file():
                raise DataError(f"missing file {path} (clip {plan.uid}); restore it or remove the clip from the metadata")


def normalise_size(size: int | tuple[int, int] | None) -> Size | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


@dataclass
class LayoutInfo:
    name: str
    semantic: bool  # the layout has class maps
    class_names: list[str] = field(default_factory=list)
    # how images and palette labels are read: "cv2" (bilinear / nearest squash), or the official
    # AVSBench-semantic PIL path, "pil-resize" (squash) or "pil-crop" (short side + centre crop)
    reader: str = "cv2"
    palette_classes: int = 256  # palette colours beyond this many classes read as background


class ClipDataset(Dataset[ClipSample]):
    """Reads the clips of a list of plans into ClipSample.

    size: (H, W) or an int for square frames; None keeps the stored size (masks follow the frame).
    sample_rate: the model's rate; audio is resampled to it and cut into one window per frame.
    """

    def __init__(
        self,
        plans: list[ClipPlan],
        info: LayoutInfo,
        size: int | tuple[int, int] | None = None,
        sample_rate: int = 16000,
        window_seconds: float = 1.0,
    ) -> None:
        if sample_rate <= 0:
            raise DataError(f"sample_rate must be positive, got {sample_rate}")
        require_files(plans)
        self.plans = plans
        self.info = info
        self.size = normalise_size(size)
        self.sample_rate = sample_rate
        self.window_seconds = window_seconds
        logger.info("%s: %d clips", info.name, len(plans))

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def uids(self) -> list[str]:
        return [plan.uid for plan in self.plans]

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, index: int) -> ClipSample:
        return self.load(index)

    def load(self, index: int, frame_indices: list[int] | None = None) -> ClipSample:
        """Clip `index`; with `frame_indices`, only those frames (in that order) and their audio windows."""
        plan = self.plans[index]
        if frame_indices is not None:
            plan = replace(plan, frames=tuple(plan.frames[i] for i in frame_indices))
        frame_size = self.size or self._first_frame_size(plan)
        height, width = frame_size
        t = len(plan.frames)
        frames = np.zeros((t, height, width, 3), dtype=np.uint8)
        masks = np.zeros((t, height, width), dtype=np.uint8)
        semantic = np.zeros((t, height, width), dtype=np.uint8) if self.info.semantic else None
        mask_valid = np.zeros(t, dtype=bool)
        frame_valid = np.zeros(t, dtype=bool)
        for i, frame in enumerate(plan.frames):
            if frame.image is None:
                continue
            frames[i] = self._read_image(frame.image, frame_size)
            frame_valid[i] = True
            if not frame.has_truth:
                continue
            mask_valid[i] = True
            classes = self._read_classes(frame, frame_size) if frame.has_semantic else None
            if semantic is not None and classes is not None:
                semantic[i] = classes
            if frame.mask is not None and frame.mask_rule == "pil-1":
                masks[i] = read_mask_pil_1(frame.mask, frame_size)
            elif frame.mask is not None:
                masks[i] = read_gray(frame.mask, frame_size) > 0
            elif classes is not None:
                masks[i] = (classes > 0) & (classes != IGNORE_LABEL)
        audio = self._clip_audio(plan, t, frame_indices)
        audio[~frame_valid] = 0.0  # a padding frame has no sound
        return ClipSample(
            uid=plan.uid, frames=frames, audio=audio, masks=masks, semantic=semantic,
            mask_valid=mask_valid, frame_valid=frame_valid, tags=list(plan.tags),
            class_names=self.class_names, layout=self.info.name,
        )

    def _clip_audio(self, plan: ClipPlan, t: int, frame_indices: list[int] | None) -> np.ndarray:
        """float32 [T, S]: frame t's window is [t, t + window_seconds) s of the clip's audio."""
        wave = self._read_audio(plan)
        if frame_indices is None:
            return audio_windows(wave, self.sample_rate, t, self.window_seconds)
        return audio_windows(wave, self.sample_rate, max(frame_indices) + 1, self.window_seconds)[frame_indices]

    def _first_frame_size(self, plan: ClipPlan) -> Size:
        first = next(f.image for f in plan.frames if f.image is not None)
        return self._read_image(first, None).shape[:2]  # type: ignore[return-value]

    def _read_image(self, path: Path, size: Size | None) -> np.ndarray:
        if self.info.reader == "cv2":
            return read_rgb(path, size)
        return read_rgb_pil(path, size, crop=self.info.reader == "pil-crop")

    def _read_classes(self, frame: FramePlan, size: Size) -> np.ndarray:
        if frame.semantic is not None:
            return read_gray(frame.semantic, size)
        if frame.semantic_rgb is not None and self.info.reader != "cv2":
            return read_palette_labels_pil(frame.semantic_rgb, size, self.info.reader == "pil-crop", self.info.palette_classes)
        if frame.semantic_rgb is not None:
            labels = read_palette_labels(frame.semantic_rgb, size)
            return np.where(labels < self.info.palette_classes, labels, 0).astype(np.uint8)
        raise DataError(f"frame {frame.image} has no class map")

    def _read_audio(self, plan: ClipPlan) -> np.ndarray:
        waves = [decode_audio(path, self.sample_rate) for path in plan.audio]
        if len(waves) == 1:
            return waves[0]
        length = max(w.size for w in waves)
        mix = np.zeros(length, dtype=np.float32)
        for w in waves:
            mix[: w.size] += w
        return mix / len(waves)


class SampledFrames(Dataset[ClipSample]):
    """Training view of a ClipDataset that reads `k` random frames of each clip.

    The frames of a clip are near-duplicates, so under a fixed compute budget k < T frames per clip
    show more distinct scenes per step. The choice depends only on (seed, epoch, clip index), so a
    resumed run draws the same frames; call `set_epoch` before building each epoch's loader.
    """

    def __init__(self, dataset: ClipDataset, k: int, seed: int = 0) -> None:
        if k < 1:
            raise DataError(f"frames_per_clip must be at least 1, got {k}")
        self.dataset = dataset
        self.k = k
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def frame_indices(self, index: int) -> list[int]:
        total = len(self.dataset.plans[index].frames)
        if self.k >= total:
            return list(range(total))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return sorted(int(i) for i in rng.choice(total, size=self.k, replace=False))

    def __getitem__(self, index: int) -> ClipSample:
        return self.dataset.load(index, self.frame_indices(index))


__all__ = ["IGNORE_LABEL", "ClipDataset", "SampledFrames", "ClipPlan", "FramePlan", "LayoutInfo", "require_files", "normalise_size"]

"""The one sample type every dataset layout yields, and the DataLoader collate for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ClipSample:
    """One clip (or one image, T = 1) with its audio windows and ground truth.

    frames:      uint8 [T, H, W, 3] RGB; padding frames are zeros
    audio:       float32 [T, S] mono, frame t's window is [t, t + 1) s at the model's sample rate
    masks:       uint8 [T, H, W] in {0, 1}, sounding pixels
    semantic:    uint8 [T, H, W] class ids (0 = background), or None for binary-only layouts
    mask_valid:  bool [T], the frame has ground truth (S4 / AVS-Semantic v1s train: first only)
    frame_valid: bool [T], the frame is real (AVS-Semantic v1 clips are padded from 5 to 10)
    tags:        subsets the clip belongs to ("v1s", a category, "off-screen", ...)
    class_names: index = class id, empty when the layout has no class list
    """

    uid: str
    frames: np.ndarray
    audio: np.ndarray
    masks: np.ndarray
    semantic: np.ndarray | None
    mask_valid: np.ndarray
    frame_valid: np.ndarray
    tags: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    layout: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def collate_clips(samples: list[ClipSample]) -> dict[str, Any]:
    """Stack samples of one size into tensors: frames uint8 [B, T, H, W, 3], audio [B, T, S],
    masks [B, T, H, W], semantic [B, T, H, W] (or None), mask_valid / frame_valid [B, T]."""
    if not samples:
        raise ValueError("collate_clips needs at least one sample")
    has_semantic = all(s.semantic is not None for s in samples)
    return {
        "uid": [s.uid for s in samples],
        "frames": torch.from_numpy(np.stack([s.frames for s in samples])),
        "audio": torch.from_numpy(np.stack([s.audio for s in samples])),
        "masks": torch.from_numpy(np.stack([s.masks for s in samples])),
        "semantic": torch.from_numpy(np.stack([s.semantic for s in samples])) if has_semantic else None,  # type: ignore[misc]
        "mask_valid": torch.from_numpy(np.stack([s.mask_valid for s in samples])),
        "frame_valid": torch.from_numpy(np.stack([s.frame_valid for s in samples])),
        "tags": [list(s.tags) for s in samples],
    }

"""`open_dataset(root, layout, split, size, sample_rate)`: one entry point for every layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ddavs_rt.errors import DataError

from .avsbench import MS3Dataset, S4Dataset
from .avss import AVSSemanticDataset, SynthAVSDataset
from .base import ClipDataset
from .vpo import VPODataset

LAYOUTS: dict[str, type[ClipDataset]] = {
    "synthavs": SynthAVSDataset,
    "avss": AVSSemanticDataset,
    "s4": S4Dataset,
    "ms3": MS3Dataset,
    "vpo": VPODataset,
}


def open_dataset(
    root: str | Path,
    layout: str,
    split: str,
    size: int | tuple[int, int] | None = 224,
    sample_rate: int = 16000,
    **options: Any,
) -> ClipDataset:
    """Open a dataset tree. `options` go to the layout (VPO: subset="ss"; AVS-Semantic: labels)."""
    root = Path(root)
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise DataError(f"dataset root {root} is not a folder; check data.root")
    return LAYOUTS[layout](root, split, size=size, sample_rate=sample_rate, **options)

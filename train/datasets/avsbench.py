"""AVSBench-object: S4 (single source) and MS3 (multiple sources), 5 frames per clip.

S4:  s4_meta_data.csv (name, category, split)
     visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
     gt_masks/{split}/{category}/{name}/{name}_{k}.png   (train: k = 1 only; val/test: 1..5)
     audio_wav/{split}/{category}/{name}.wav             (5 s)
MS3: ms3_meta_data.csv (video_id or name, split)
     visual_frames/{name}/{name}.mp4_{1..5}.png
     gt_masks/{split}/{name}/{name}_{1..5}.png
     audio_wav/{split}/{name}.wav
"""

from __future__ import annotations

from pathlib import Path

from ddavs_rt.errors import DataError

from .base import ClipDataset, ClipPlan, FramePlan, LayoutInfo
from .tables import read_table

FRAMES_PER_CLIP = 5


def _rows_of_split(rows: list[dict[str, str]], split: str, table: Path) -> list[dict[str, str]]:
    chosen = [row for row in rows if row["split"] == split]
    if not chosen:
        splits = sorted({row["split"] for row in rows})
        raise DataError(f"{table} has no clips for split {split!r} (splits: {', '.join(splits)})")
    return chosen


def s4_plans(root: Path, split: str) -> list[ClipPlan]:
    table = root / "s4_meta_data.csv"
    rows = _rows_of_split(read_table(table, [("name", "video_id"), "category", "split"]), split, table)
    plans = []
    for row in rows:
        name, category = row["name"], row["category"]
        frame_dir = root / "visual_frames" / split / category / name
        mask_dir = root / "gt_masks" / split / category / name
        frames = []
        for k in range(1, FRAMES_PER_CLIP + 1):
            has_mask = split != "train" or k == 1
            frames.append(FramePlan(
                image=frame_dir / f"{name}_{k}.png",
                mask=mask_dir / f"{name}_{k}.png" if has_mask else None,
            ))
        plans.append(ClipPlan(
            uid=name, frames=tuple(frames),
            audio=(root / "audio_wav" / split / category / f"{name}.wav",), tags=(category,),
        ))
    return plans


def ms3_plans(root: Path, split: str) -> list[ClipPlan]:
    table = root / "ms3_meta_data.csv"
    rows = _rows_of_split(read_table(table, [("video_id", "name"), "split"]), split, table)
    plans = []
    for row in rows:
        name = row["video_id"]
        frames = tuple(
            FramePlan(
                image=root / "visual_frames" / name / f"{name}.mp4_{k}.png",
                mask=root / "gt_masks" / split / name / f"{name}_{k}.png",
            )
            for k in range(1, FRAMES_PER_CLIP + 1)
        )
        plans.append(ClipPlan(uid=name, frames=frames, audio=(root / "audio_wav" / split / f"{name}.wav",), tags=("multi",)))
    return plans


class S4Dataset(ClipDataset):
    def __init__(self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000) -> None:
        super().__init__(s4_plans(Path(root), split), LayoutInfo("s4", semantic=False), size, sample_rate)


class MS3Dataset(ClipDataset):
    def __init__(self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000) -> None:
        super().__init__(ms3_plans(Path(root), split), LayoutInfo("ms3", semantic=False), size, sample_rate)

"""AVSBench-object: S4 (single source) and MS3 (multiple sources), 5 frames per clip.

The official download unpacks to `Single-source/` and `Multi-sources/`; each holds its metadata
CSV beside a data folder (the paths of OpenNLPLab/AVSBench `avs_s4/config.py`, `avs_ms3/config.py`):

S4:  Single-source/s4_meta_data.csv (name, category, split)
     Single-source/s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
     Single-source/s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png  (train: k = 1 only)
     Single-source/s4_data/audio_wav/{split}/{category}/{name}.wav            (5 s)
MS3: Multi-sources/ms3_meta_data.csv (video_id or name, split)
     Multi-sources/ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png
     Multi-sources/ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png
     Multi-sources/ms3_data/audio_wav/{split}/{name}.wav

`--data` may name the archive's top folder (holding Single-source/ or Multi-sources/), the metadata
folder, or the data folder; a tree whose CSV sits beside visual_frames/ (no data folder) also opens.
S4 masks are binarised as the official loader does, with PIL `convert('1')`; MS3 masks (read in
mode 'P' and divided by 255 officially) count as sounding where > 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ddavs_rt.errors import DataError

from .base import ClipDataset, ClipPlan, FramePlan, LayoutInfo
from .tables import read_table

FRAMES_PER_CLIP = 5


@dataclass(frozen=True)
class ObjectTree:
    """Where one AVSBench-object subset's files are: the metadata CSV and the data folder."""

    table: Path
    data: Path


def find_tree(root: Path, top: str, table_name: str, data_name: str) -> ObjectTree:
    """Locate `table_name` and the folder holding visual_frames/ from any of the accepted roots."""
    candidates = [
        (root / top / table_name, root / top / data_name),  # the archive's top folder
        (root / table_name, root / data_name),  # the metadata folder (Single-source/)
        (root.parent / table_name, root),  # the data folder (s4_data/)
        (root / table_name, root),  # CSV beside visual_frames/ (a flattened copy)
    ]
    for table, data in candidates:
        if table.is_file() and (data / "visual_frames").is_dir():
            return ObjectTree(table=table, data=data)
    raise DataError(
        f"{root} is not an AVSBench-object {top} tree: expected {top}/{table_name} beside "
        f"{top}/{data_name}/{{visual_frames,gt_masks,audio_wav}} (give the archive folder, {top}/ or {data_name}/)"
    )


def _rows_of_split(rows: list[dict[str, str]], split: str, table: Path) -> list[dict[str, str]]:
    chosen = [row for row in rows if row["split"] == split]
    if not chosen:
        splits = sorted({row["split"] for row in rows})
        raise DataError(f"{table} has no clips for split {split!r} (splits: {', '.join(splits)})")
    return chosen


def s4_plans(root: Path, split: str) -> list[ClipPlan]:
    tree = find_tree(root, "Single-source", "s4_meta_data.csv", "s4_data")
    rows = _rows_of_split(read_table(tree.table, [("name", "video_id"), "category", "split"]), split, tree.table)
    data = tree.data
    plans = []
    for row in rows:
        name, category = row["name"], row["category"]
        frame_dir = data / "visual_frames" / split / category / name
        mask_dir = data / "gt_masks" / split / category / name
        frames = []
        for k in range(1, FRAMES_PER_CLIP + 1):
            has_mask = split != "train" or k == 1
            frames.append(FramePlan(
                image=frame_dir / f"{name}_{k}.png",
                mask=mask_dir / f"{name}_{k}.png" if has_mask else None,
                mask_rule="pil-1",
            ))
        plans.append(ClipPlan(
            uid=name, frames=tuple(frames),
            audio=(data / "audio_wav" / split / category / f"{name}.wav",), tags=(category,),
        ))
    return plans


def ms3_plans(root: Path, split: str) -> list[ClipPlan]:
    tree = find_tree(root, "Multi-sources", "ms3_meta_data.csv", "ms3_data")
    rows = _rows_of_split(read_table(tree.table, [("video_id", "name"), "split"]), split, tree.table)
    data = tree.data
    plans = []
    for row in rows:
        name = row["video_id"]
        frames = tuple(
            FramePlan(
                image=data / "visual_frames" / name / f"{name}.mp4_{k}.png",
                mask=data / "gt_masks" / split / name / f"{name}_{k}.png",
            )
            for k in range(1, FRAMES_PER_CLIP + 1)
        )
        plans.append(ClipPlan(uid=name, frames=frames, audio=(data / "audio_wav" / split / f"{name}.wav",), tags=("multi",)))
    return plans


class S4Dataset(ClipDataset):
    def __init__(self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000) -> None:
        super().__init__(s4_plans(Path(root), split), LayoutInfo("s4", semantic=False), size, sample_rate)


class MS3Dataset(ClipDataset):
    def __init__(self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000) -> None:
        super().__init__(ms3_plans(Path(root), split), LayoutInfo("ms3", semantic=False), size, sample_rate)

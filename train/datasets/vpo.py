"""VPO (Visual Post-production: COCO images paired with VGGSound audio), one image per sample.

vpo_{subset}_*.csv (subset ss, ms or msmi) with cateName, img_Id, ann_Ids, cateId, vgg_file, split
images  <set>/data/<cateName>/<img_Id:012d>.jpg   <set> is the row's `set` column when the CSV
                                                   has one, else its split
masks   mask/<cateName>/<img_Id:012d>_<ann:012d>.png, > 0 (and not 255) is the object
audio   audios/<vgg_file>.wav
Rows that share an image are one sample: their objects are painted with their class ids and
their audio files are mixed (averaged), the multi-source reading of VPO-MS / MSMI. Class ids are
the index in classes.json at the root when present, else in ["background"] + the sorted
category names of all the subset's CSVs (every split, so ids agree across splits).
"""

from __future__ import annotations

import re
from pathlib import Path

from ddavs_rt.errors import DataError

from .avss import read_class_names
from .base import ClipDataset, ClipPlan, FramePlan, LayoutInfo
from .tables import read_table

VPO_SUBSETS = ("ss", "ms", "msmi")
VPO_COLUMNS = ["cateName", "img_Id", "ann_Ids", "cateId", "vgg_file", "split"]


def vpo_rows(root: Path, subset: str) -> list[dict[str, str]]:
    if subset not in VPO_SUBSETS:
        raise DataError(f"unknown VPO subset {subset!r}; use one of {', '.join(VPO_SUBSETS)}")
    tables = sorted(root.glob(f"vpo_{subset}_*.csv"))
    if not tables:
        raise DataError(f"missing metadata file {root}/vpo_{subset}_*.csv; check the dataset root")
    rows: list[dict[str, str]] = []
    for table in tables:
        rows.extend(read_table(table, VPO_COLUMNS))
    return rows


def vpo_plans(root: Path, split: str, subset: str, class_names: list[str]) -> list[ClipPlan]:
    rows = [row for row in vpo_rows(root, subset) if row["split"] == split]
    if not rows:
        raise DataError(f"the vpo_{subset}_*.csv files in {root} have no rows for split {split!r}")
    class_ids = {name: i for i, name in enumerate(class_names)}
    groups: dict[tuple[str, int], list[dict[str, str]]] = {}
    for row in rows:
        try:
            image_id = int(row["img_Id"])
        except ValueError as exc:
            raise DataError(f"VPO row with img_Id {row['img_Id']!r}: expected an integer") from exc
        groups.setdefault((row.get("set") or row["split"], image_id), []).append(row)
    plans = []
    for (image_set, image_id), members in groups.items():
        first = members[0]
        image = root / image_set / "data" / first["cateName"] / f"{image_id:012d}.jpg"
        class_masks = []
        for row in members:
            if row["cateName"] not in class_ids:
                raise DataError(f"VPO category {row['cateName']!r} is not in the class list; add it to classes.json")
            for ann in re.findall(r"\d+", row["ann_Ids"]):
                mask = root / "mask" / row["cateName"] / f"{image_id:012d}_{int(ann):012d}.png"
                class_masks.append((mask, class_ids[row["cateName"]]))
        if not class_masks:
            raise DataError(f"VPO image {image_id}: ann_Ids is empty; every row needs an annotation id")
        audio = tuple(dict.fromkeys(root / "audios" / f"{row['vgg_file']}.wav" for row in members))
        tags = (subset, *dict.fromkeys(row["cateName"] for row in members))
        plans.append(ClipPlan(
            uid=f"{image_id:012d}", frames=(FramePlan(image=image, class_masks=tuple(class_masks)),),
            audio=audio, tags=tags,
        ))
    return plans


class VPODataset(ClipDataset):
    def __init__(
        self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000,
        subset: str = "ss",
    ) -> None:
        root = Path(root)
        class_names = read_class_names(root) or ["background", *sorted({r["cateName"] for r in vpo_rows(root, subset)})]
        plans = vpo_plans(root, split, subset, class_names)
        super().__init__(plans, LayoutInfo("vpo", semantic=True, class_names=class_names), size, sample_rate)

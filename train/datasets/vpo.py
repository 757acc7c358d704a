"""VPO (Visual Post-production: COCO images paired with VGGSound audio), read as CAVP reads it.

The layout and rules of cyh-0/CAVP (`config/config_vpo_{ss,ms,msmi}.py`, `main_vpo_mono.py`,
`dataset/vpo_mono/{single,multi}_source/`). A subset folder `VPO-SS/`, `VPO-MS/` or `VPO-MSMI/`
(or the `VPO/` folder above them, with `subset`) holds:

    vpo_{ss,ms,msmi}_data_stereo.csv   cateName, img_Id, ann_Ids, cateId, vgg_file, split
                                       (+ multi_instance for MSMI); split "val" reads as "test"
    VPO-SS:       data/<cateName>/<img_Id:012d>.jpg, mask/<cateName>/<img_Id:012d>_<ann_Ids:012d>.png
                  one sample per row
    VPO-MS/MSMI:  data/<img_Id:012d>.jpg, mask/<img_Id:012d>.png; one sample per image, its rows
                  are its sources; an MSMI row with multi_instance == 0 is read from VPO-MS
    audio:        <VGGSound root>/audios/<vgg_file>.wav, a separate download (`audio_root`)

Masks hold COCO category ids per pixel: each id is mapped through COCO's names to its index in
the fixed 22-entry class list (background + 21 categories in alphabetical order), 0 stays
background and 255 stays 255, an ignored pixel (the metric and CAVP's loss leave it out). The audio
of a sample is each source resampled, cut to `audio_seconds` (CAVP: 3 s) centred in its file
(python slicing from len // 2 - L // 2; a short result is tiled), and the sources summed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ddavs_rt.errors import DataError

from .base import ClipDataset, ClipPlan, FramePlan, LayoutInfo
from .media import Size, decode_audio, resize_to
from .tables import read_table

VPO_SUBSETS = {"ss": "VPO-SS", "ms": "VPO-MS", "msmi": "VPO-MSMI"}
VPO_COLUMNS = ["cateName", "img_Id", "ann_Ids", "cateId", "vgg_file", "split"]
VPO_AUDIO_SECONDS = 3.0  # CAVP config_vpo_*.py audio_len
# CAVP config/class_list.py: index_table_coco (class id = position) and coco_class_dict (COCO id -> name)
VPO_CLASSES = [
    "background", "airplane", "baby", "bird", "bus", "car", "cat", "cell phone", "cow", "dog", "elephant",
    "female", "horse", "keyboard", "male", "motorcycle", "mouse", "sheep", "skateboard", "sports ball",
    "tennis racket", "zebra",
]
COCO_NAMES = {
    5: "airplane", 16: "bird", 6: "bus", 3: "car", 17: "cat", 77: "cell phone", 21: "cow", 18: "dog",
    22: "elephant", 19: "horse", 76: "keyboard", 4: "motorcycle", 74: "mouse", 20: "sheep", 41: "skateboard",
    37: "sports ball", 43: "tennis racket", 24: "zebra", 92: "male", 93: "female", 94: "baby",
}
IGNORE = 255


def coco_lookup() -> np.ndarray:
    """uint8 [256]: COCO id -> VPO class id; 0 -> 0, 255 -> 255, any other id -> 254 (unknown)."""
    table = np.full(256, 254, dtype=np.uint8)
    table[0], table[IGNORE] = 0, IGNORE
    for coco_id, name in COCO_NAMES.items():
        table[coco_id] = VPO_CLASSES.index(name)
    return table


_COCO_TO_VPO = coco_lookup()


def subset_folder(root: Path, subset: str) -> Path:
    """The folder holding the subset's CSV: `root` itself, or root/VPO-XX."""
    if subset not in VPO_SUBSETS:
        raise DataError(f"unknown VPO subset {subset!r}; use one of {', '.join(VPO_SUBSETS)}")
    for folder in (root, root / VPO_SUBSETS[subset]):
        if any(folder.glob(f"vpo_{subset}_*.csv")):
            return folder
    raise DataError(
        f"{root} is not a VPO tree: expected {VPO_SUBSETS[subset]}/vpo_{subset}_data_stereo.csv beside "
        f"{VPO_SUBSETS[subset]}/data/ and mask/ (give VPO/ or {VPO_SUBSETS[subset]}/, and subset ss, ms or msmi)"
    )


def vpo_rows(folder: Path, subset: str) -> list[dict[str, str]]:
    tables = sorted(folder.glob(f"vpo_{subset}_*.csv"))
    rows: list[dict[str, str]] = []
    for table in tables:
        rows.extend(read_table(table, VPO_COLUMNS + (["multi_instance"] if subset == "msmi" else [])))
    for row in rows:
        if row["split"] == "val":  # CAVP prepare_train_data: val is the test split
            row["split"] = "test"
        for column in ("img_Id", "ann_Ids"):
            if not row[column].isdigit():
                raise DataError(f"VPO row with {column} {row[column]!r}: expected an integer")
    return rows


def audio_folder(folder: Path, audio_root: str | Path | None) -> Path:
    candidates = [Path(audio_root)] if audio_root is not None else [folder, folder.parent, folder.parent.parent]
    for base in candidates:
        if (base / "audios").is_dir():
            return base / "audios"
    raise DataError(
        f"VPO audio comes from a VGGSound root: give its folder (the one holding audios/<vgg_file>.wav) as "
        f"audio_root / --audio-root{'; ' + str(audio_root) + ' has no audios/' if audio_root is not None else ''}"
    )


def vpo_plans(folder: Path, split: str, subset: str, audios: Path) -> list[ClipPlan]:
    wanted = "test" if split == "val" else split
    rows = [row for row in vpo_rows(folder, subset) if row["split"] == wanted]
    if not rows:
        raise DataError(f"the vpo_{subset}_*.csv files in {folder} have no rows for split {split!r}")
    if subset == "ss":
        return [
            ClipPlan(
                uid=f"{row['img_Id']}_{row['ann_Ids']}",
                frames=(FramePlan(
                    image=folder / "data" / row["cateName"] / f"{row['img_Id'].zfill(12)}.jpg",
                    semantic=folder / "mask" / row["cateName"] / f"{row['img_Id'].zfill(12)}_{row['ann_Ids'].zfill(12)}.png",
                ),),
                audio=(audios / f"{row['vgg_file']}.wav",), tags=(subset, row["cateName"]),
            )
            for row in rows
        ]
    groups: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(row["img_Id"], []).append(row)
    plans = []
    for image_id, members in groups.items():
        base = folder
        if subset == "msmi" and members[0]["multi_instance"].strip() in ("0", "0.0"):
            base = folder.parent / VPO_SUBSETS["ms"]  # CAVP reads single-instance MSMI rows from VPO-MS
        name = image_id.zfill(12)
        plans.append(ClipPlan(
            uid=image_id,
            frames=(FramePlan(image=base / "data" / f"{name}.jpg", semantic=base / "mask" / f"{name}.png"),),
            audio=tuple(audios / f"{row['vgg_file']}.wav" for row in members),  # every row is a source
            tags=(subset, *dict.fromkeys(row["cateName"] for row in members)),
        ))
    return plans


def centred_crop(wave: np.ndarray, length: int) -> np.ndarray:
    """CAVP crop_audio: samples [len // 2 - length // 2, ... + length) with python slicing (a
    negative start counts from the end), tiled to `length` when the slice is short."""
    start = wave.shape[-1] // 2 - length // 2
    piece = wave[start : start + length]
    if piece.size == 0:
        return np.zeros(length, dtype=np.float32)
    if piece.size != length:
        piece = np.tile(piece, length // piece.size + 1)[:length]
    return piece.astype(np.float32)


class VPODataset(ClipDataset):
    """One image per sample (T = 1) with its sources' audio summed; class ids of VPO_CLASSES."""

    def __init__(
        self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000,
        subset: str = "ss", audio_root: str | Path | None = None, audio_seconds: float = VPO_AUDIO_SECONDS,
    ) -> None:
        folder = subset_folder(Path(root), subset)
        plans = vpo_plans(folder, split, subset, audio_folder(folder, audio_root))
        super().__init__(plans, LayoutInfo("vpo", semantic=True, class_names=list(VPO_CLASSES)), size, sample_rate,
                         window_seconds=audio_seconds)

    def _read_classes(self, frame: FramePlan, size: Size) -> np.ndarray:
        path = frame.semantic
        assert path is not None
        try:
            with Image.open(path) as image:
                coco = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read mask {path}: {exc}; restore it") from exc
        if coco.ndim == 3:
            coco = coco[..., 0]
        classes = _COCO_TO_VPO[coco]
        if (classes == 254).any():
            unknown = sorted(set(np.unique(coco[classes == 254]).tolist()))
            raise DataError(f"{path} holds COCO ids {unknown} that are not VPO categories; check the mask")
        return resize_to(classes, size, nearest=True)

    def _clip_audio(self, plan: ClipPlan, t: int, frame_indices: list[int] | None) -> np.ndarray:
        length = int(self.sample_rate * self.window_seconds)
        mix = np.zeros(length, dtype=np.float32)
        for path in plan.audio:  # CAVP: resample, crop each source, then sum
            mix += centred_crop(decode_audio(path, self.sample_rate), length)
        return mix[None].repeat(t if frame_indices is None else len(frame_indices), axis=0)


__all__ = ["COCO_NAMES", "VPODataset", "VPO_CLASSES", "centred_crop"]

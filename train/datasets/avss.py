"""AVS-Semantic (AVSBench-semantic) and SynthAVS, which is written in the same layout.

metadata.csv (uid, label, split), label2idx.json; per clip {label}/{uid}/:
    frames/{i}.jpg, labels_rgb/{i}.png (VOC palette), audio.wav; i counts from 0.
AVS-Semantic (the released `avs_released/` folder, read as OpenNLPLab/AVSBench
`avss/color_dataloader.py` reads it): only the palette PNGs, colours outside the first 71 palette
entries read as background; v2 clips have 10 frames, v1s / v1m clips 5, padded to 10 (frame_valid
False); v1s train clips are labelled on their first frame only. Geometry: the train split scales
the short side to the size and cuts the centre, other splits squash to the size (PIL BILINEAR for
frames, NEAREST for labels). The binary mask is semantic > 0.
SynthAVS (label "synth"): as many frames as frames/ holds; labels_semantic/{i}.png (class ids)
before labels_rgb/{i}.png; masks/{i}.png (0/255) is the binary mask when present; meta.json {"tags": [...]} per clip; classes.json at the root lists the class
names (index = class id).
"""

from __future__ import annotations

import json
from pathlib import Path

from ddavs_rt.errors import DataError

from .base import ClipDataset, ClipPlan, FramePlan, LayoutInfo
from .tables import read_table

AVSS_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}
AVSS_PADDED_FRAMES = 10
AVSS_NUM_CLASSES = 71  # 70 categories + background, the official cfg.NUM_CLASSES
SYNTH_LABEL = "synth"


def read_class_names(root: Path) -> list[str]:
    """classes.json (a list) or label2idx.json ({name: id}) at the root; [] when neither."""
    classes = root / "classes.json"
    if classes.is_file():
        names = _read_json(classes)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{classes} must hold a JSON list of class names")
        return names
    label2idx = root / "label2idx.json"
    if label2idx.is_file():
        mapping = _read_json(label2idx)
        if not isinstance(mapping, dict):
            raise DataError(f"{label2idx} must hold a JSON object {{name: id}}")
        return [name for name, _ in sorted(mapping.items(), key=lambda item: int(item[1]))]
    return []


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _label_paths(clip_dir: Path, i: int, synth: bool) -> dict[str, Path | None]:
    semantic = clip_dir / "labels_semantic" / f"{i}.png"
    rgb = clip_dir / "labels_rgb" / f"{i}.png"
    if not synth:  # AVS-Semantic: the palette PNGs only, as the official loader
        return {"semantic": None, "semantic_rgb": rgb}
    if semantic.is_file():
        return {"semantic": semantic, "semantic_rgb": None}
    if rgb.is_file():
        return {"semantic": None, "semantic_rgb": rgb}
    return {"semantic": semantic, "semantic_rgb": None}  # missing: require_files names it


def _count_frames(clip_dir: Path) -> int:
    count = 0
    while (clip_dir / "frames" / f"{count}.jpg").is_file():
        count += 1
    if count == 0:
        raise DataError(f"missing file {clip_dir / 'frames' / '0.jpg'}: the clip has no frames")
    return count


def avss_plans(root: Path, split: str, labels: tuple[str, ...] | None = None, synth: bool = False) -> list[ClipPlan]:
    table = root / "metadata.csv"
    rows = [row for row in read_table(table, ["uid", "label", "split"]) if row["split"] == split]
    if labels is not None:
        rows = [row for row in rows if row["label"] in labels]
    if not rows:
        raise DataError(f"{table} has no clips for split {split!r}" + (f" with label {'/'.join(labels)}" if labels else ""))
    plans = []
    for row in rows:
        uid, label = row["uid"], row["label"]
        clip_dir = root / label / uid
        if synth:
            num_frames = _count_frames(clip_dir)
            padded = num_frames
        elif label in AVSS_FRAMES:
            num_frames, padded = AVSS_FRAMES[label], AVSS_PADDED_FRAMES
        else:
            raise DataError(f"{table}: clip {uid} has label {label!r}; expected one of {', '.join(AVSS_FRAMES)}")
        first_only = label == "v1s" and split == "train"
        frames = []
        for i in range(padded):
            if i >= num_frames:
                frames.append(FramePlan(image=None))
                continue
            image = clip_dir / "frames" / f"{i}.jpg"
            if first_only and i > 0:
                frames.append(FramePlan(image=image))
                continue
            binary = clip_dir / "masks" / f"{i}.png"
            frames.append(FramePlan(image=image, mask=binary if synth and binary.is_file() else None, **_label_paths(clip_dir, i, synth)))
        tags = [label] if not synth else []
        if synth:
            meta = clip_dir / "meta.json"
            if meta.is_file():
                content = _read_json(meta)
                clip_tags = content.get("tags", []) if isinstance(content, dict) else None
                if not isinstance(clip_tags, list):
                    raise DataError(f"{meta}: 'tags' must be a list of strings")
                tags = [str(t) for t in clip_tags]
        plans.append(ClipPlan(uid=uid, frames=tuple(frames), audio=(clip_dir / "audio.wav",), tags=tuple(tags)))
    return plans


class AVSSemanticDataset(ClipDataset):
    """AVS-Semantic: every label (v1s, v1m, v2) unless `labels` narrows it."""

    def __init__(
        self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000,
        labels: tuple[str, ...] | None = None,
    ) -> None:
        root = Path(root)
        if not (root / "metadata.csv").is_file():
            raise DataError(
                f"{root} is not an AVS-Semantic tree: expected metadata.csv, label2idx.json and "
                "v1s/ v1m/ v2/ clip folders (the released avs_released/ folder)"
            )
        plans = avss_plans(root, split, labels=labels or tuple(AVSS_FRAMES))
        names = read_class_names(root)
        info = LayoutInfo(
            "avss", semantic=True, class_names=names, reader="pil-crop" if split == "train" else "pil-resize",
            palette_classes=len(names) or AVSS_NUM_CLASSES,
        )
        super().__init__(plans, info, size, sample_rate)


class SynthAVSDataset(ClipDataset):
    """SynthAVS: the AVS-Semantic layout with label "synth", binary masks and per-clip tags."""

    def __init__(self, root: str | Path, split: str, size: int | tuple[int, int] | None = None, sample_rate: int = 16000) -> None:
        root = Path(root)
        if not (root / "classes.json").is_file():
            raise DataError(f"missing file {root / 'classes.json'}: a SynthAVS root lists its classes there")
        plans = avss_plans(root, split, labels=(SYNTH_LABEL,), synth=True)
        super().__init__(plans, LayoutInfo("synthavs", semantic=True, class_names=read_class_names(root)), size, sample_rate)

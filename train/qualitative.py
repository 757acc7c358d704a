"""`python -m ddavs_rt.train.qualitative`: a PNG grid of test frames, their ground truth and each model's mask.

    python -m ddavs_rt.train.qualitative --data data/synthavs-test \\
        --model Baseline=runs/budget/tiny-baseline/seed0/best --model DDAVS=runs/budget/tiny-full/seed0/best \\
        --tags single multi weak offscreen --out docs/images/comparison-grid.png

One row per tag: the first test clip carrying it (and no earlier row's clip), at its middle frame. Columns: the frame, the
ground truth, then every --model (checkpoint folder) with its J for that frame in the corner.
A mask is shown by dimming the frame outside it (any object colour stays readable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from ddavs_rt.atomic import atomic_write_bytes
from ddavs_rt.errors import DataError, DdavsError

from .datasets import ClipSample, open_dataset

CELL = 224
LABEL_HEIGHT = 22


def frame_iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """J of one frame; an empty truth with an empty prediction counts as 1 (the TPAVI convention)."""
    union = np.logical_or(prediction, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, truth).sum() / union)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((LABEL_HEIGHT, image.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, text, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def show_mask(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The frame dimmed outside `mask` (bool [H, W]) with a white contour: readable on any colour."""
    out = (frame.astype(np.float32) * 0.3).astype(np.uint8)
    out[mask] = frame[mask]
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    return out


def _pick(dataset, tags: list[str]) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    used: set[int] = set()
    for tag in tags:
        index = next((i for i, plan in enumerate(dataset.plans) if tag in plan.tags and i not in used), None)
        if index is None:
            raise DataError(f"no clip carries the tag {tag!r}; choose from the dataset's tags")
        rows.append((tag, index))
        used.add(index)
    return rows


@torch.no_grad()
def predict(model: torch.nn.Module, sample: ClipSample, t: int) -> np.ndarray:
    frames = torch.from_numpy(sample.frames[t : t + 1])
    audio = torch.from_numpy(sample.audio[t : t + 1])
    logits = model(frames, audio).float()
    if logits.shape[-2:] != frames.shape[1:3]:
        logits = torch.nn.functional.interpolate(logits, size=tuple(frames.shape[1:3]), mode="bilinear", align_corners=False)
    return (logits[0, 0] > 0).numpy()


def build_grid(data: Path, models: list[tuple[str, Path]], tags: list[str], split: str = "test") -> np.ndarray:
    from ddavs_rt.model.checkpoint import load_checkpoint

    dataset = open_dataset(data, "synthavs", split, size=CELL)
    loaded = [(name, load_checkpoint(folder)[0].eval()) for name, folder in models]
    rows = []
    for tag, index in _pick(dataset, tags):
        sample = dataset[index]
        valid = np.flatnonzero(sample.mask_valid)
        t = int(valid[len(valid) // 2]) if valid.size else 0
        frame, truth = sample.frames[t], sample.masks[t] > 0
        cells = [_label(frame, f"{tag}: {sample.uid}"[:30]), _label(show_mask(frame, truth), "ground truth")]
        for name, model in loaded:
            mask = predict(model, sample, t)
            cells.append(_label(show_mask(frame, mask), f"{name}  J={frame_iou(mask, truth):.2f}"))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddavs_rt.train.qualitative", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="SynthAVS root with the split")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT", help="a column (repeatable)")
    parser.add_argument("--tags", nargs="+", default=["single", "multi", "weak", "small", "offscreen"])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    models = []
    for item in args.model:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            print(f"error: --model {item!r} must be NAME=CHECKPOINT_FOLDER", file=sys.stderr)
            return 2
        models.append((name, Path(folder)))
    try:
        grid = build_grid(args.data, models, args.tags, args.split)
    except DdavsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        print("error: could not encode the PNG", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, png.tobytes())
    print(f"{args.out}: {len(args.tags)} rows x {len(models) + 2} columns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

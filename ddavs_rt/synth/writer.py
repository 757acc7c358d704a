"""Writing SynthAVS in the AVS-Semantic layout, byte-identical for the same arguments.

OUT/metadata.csv                      uid,label,split,tags  (tags joined by '|')
OUT/classes.json                      JSON list of class names (index = semantic id, 0 = background)
OUT/class_table.json                  {"classes", "look_alike", "sound_alike", "table"}: the pairs and
                                      each class's appearance and sound recipe
OUT/synth/<uid>/frames/{0..4}.jpg     RGB frames
OUT/synth/<uid>/audio.wav             16 kHz mono PCM16, 5.0 s
OUT/synth/<uid>/labels_semantic/{i}.png, labels_rgb/{i}.png (VOC palette), masks/{i}.png (0/255)
OUT/synth/<uid>/meta.json             visible / sounding / off-screen classes, levels, tags, seed

Atomicity: a clip is written into a hidden sibling folder and renamed into place, so a clip
folder is whole or absent; `metadata.csv` is the commit record, written last (after an
`os.sync()`) with `ddavs_rt.atomic`, so every clip it lists is complete on disk. Re-running into
the same OUT replaces this run's uids and keeps the other rows (a train and a val split can share
one metadata.csv).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

from ddavs_rt.atomic import atomic_write_text
from ddavs_rt.errors import DataError
from ddavs_rt.synth.audio import wav_bytes
from ddavs_rt.synth.classes import class_table, voc_palette
from ddavs_rt.synth.scene import FRAMES, Clip, clip_uid, generate_clip

log = logging.getLogger(__name__)

LABEL = "synth"
METADATA_COLUMNS = ("uid", "label", "split", "tags")
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 92, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_PALETTE_BGR = np.array([c[::-1] for c in voc_palette()], np.uint8)  # [256, 3]


def _encode(ext: str, image: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {ext} image of shape {image.shape}")
    return buffer.tobytes()


def clip_files(clip: Clip) -> dict[str, bytes]:
    """Relative path -> file bytes for one clip."""
    files: dict[str, bytes] = {}
    for i in range(FRAMES):
        files[f"frames/{i}.jpg"] = _encode(".jpg", cv2.cvtColor(clip.frames[i], cv2.COLOR_RGB2BGR), _JPEG)
        files[f"labels_semantic/{i}.png"] = _encode(".png", clip.semantic[i], _PNG)
        files[f"labels_rgb/{i}.png"] = _encode(".png", _PALETTE_BGR[clip.semantic[i]], _PNG)
        files[f"masks/{i}.png"] = _encode(".png", clip.masks[i] * np.uint8(255), _PNG)
    files["audio.wav"] = wav_bytes(clip.audio)
    files["meta.json"] = (json.dumps(clip.meta, sort_keys=True, indent=1) + "\n").encode("utf-8")
    return files


def write_clip(root: Path, clip: Clip) -> Path:
    """Write one clip under root/synth/<uid>, whole or not at all."""
    uid = clip.meta["uid"]
    final = root / LABEL / uid
    staging = root / LABEL / f".{uid}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    for rel, data in clip_files(clip).items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def _make_and_write(job: tuple[str, int, int, int, dict[str, float] | None]) -> tuple[str, list[str]]:
    root, seed, index, size, kinds = job
    clip = generate_clip(seed, index, size, kinds)
    write_clip(Path(root), clip)
    return clip.meta["uid"], list(clip.meta["tags"])


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _results(jobs: list, workers: int) -> Iterator[tuple[str, list[str]]]:
    if workers <= 1:
        _init_worker()
        for job in jobs:
            yield _make_and_write(job)
        return
    context = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
    with context.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(_make_and_write, jobs, chunksize=4)


def read_metadata(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"uid", "label", "split"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{path} lacks the column(s) {sorted(missing)}: delete it or write to another --out folder")
        return [dict(row) for row in reader]


def metadata_text(rows: Sequence[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METADATA_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r["split"], r["uid"])):
        writer.writerow({key: row.get(key, "") for key in METADATA_COLUMNS})
    return buffer.getvalue()


def write_dataset(
    out: str | Path,
    clips: int,
    seed: int,
    size: int = 224,
    split: str = "train",
    kinds: dict[str, float] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> list[dict[str, str]]:
    """Generate clips 0..clips-1 of `seed` into `out`; returns this run's metadata rows."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), seed, index, size, kinds) for index in range(clips)]
    results = _results(jobs, max(1, workers))
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=clips, desc="synth", unit="clip")
    rows = [{"uid": uid, "label": LABEL, "split": split, "tags": "|".join(tags)} for uid, tags in results]
    metadata = root / "metadata.csv"
    ours = {clip_uid(seed, index) for index in range(clips)}
    kept = [row for row in read_metadata(metadata) if row["uid"] not in ours] if metadata.exists() else []
    table = class_table()
    atomic_write_text(root / "classes.json", json.dumps(table["classes"], indent=1) + "\n")
    atomic_write_text(root / "class_table.json", json.dumps(table, sort_keys=True, indent=1) + "\n")
    os.sync()  # every clip folder is on disk before metadata.csv lists it
    atomic_write_text(metadata, metadata_text(kept + rows))
    log.info("wrote %d clips (seed %d, split %s) to %s", clips, seed, split, root)
    return rows

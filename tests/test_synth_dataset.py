"""`ddavs-rt synth` end to end: the AVS-Semantic layout on disk, byte-identical output for any
worker count, labels consistent with the labelling rule, and every subset tag's rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ddavs_rt import cli
from ddavs_rt.synth.audio import read_wav, rms_db
from ddavs_rt.synth.classes import CLASS_NAMES, voc_palette
from ddavs_rt.synth.scene import KINDS, SMALL_AREA, generate_clip

SIZE = 96
CLIPS = 12


def _synth(out: Path, workers: int, *extra: str) -> int:
    argv = ["synth", "-q", "--out", str(out), "--clips", str(CLIPS), "--seed", "11", "--size", str(SIZE)]
    return cli.main(argv + ["--workers", str(workers), *extra])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "one_worker"
    assert _synth(out, 1) == 0
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_same_arguments_give_identical_bytes_for_any_worker_count(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "two_workers"
    assert _synth(again, 2) == 0
    first, second = _tree(dataset), _tree(again)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)
    assert not any(".partial" in name or name.endswith(".tmp") for name in first)


def test_layout_is_avs_semantic(dataset: Path) -> None:
    with open(dataset / "metadata.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:3] == ["uid", "label", "split"]
        rows = list(reader)
    assert len(rows) == CLIPS and len({r["uid"] for r in rows}) == CLIPS
    assert json.loads((dataset / "classes.json").read_text()) == list(CLASS_NAMES)
    table = json.loads((dataset / "class_table.json").read_text())
    assert table["classes"] == list(CLASS_NAMES) and table["look_alike"] and table["sound_alike"]
    palette = np.array(voc_palette(), np.uint8)
    for row in rows:
        assert row["label"] == "synth" and row["split"] == "train"
        clip = dataset / row["label"] / row["uid"]
        meta = json.loads((clip / "meta.json").read_text())
        assert row["tags"].split("|") == meta["tags"] if row["tags"] else meta["tags"] == []
        audio, sr = read_wav(clip / "audio.wav")
        assert sr == 16000 and audio.shape == (80000,)
        sounding_ids = [c["id"] for c in meta["sounding_classes"]]
        for i in range(5):
            frame = cv2.imread(str(clip / "frames" / f"{i}.jpg"))
            assert frame.shape == (SIZE, SIZE, 3)
            semantic = _png(clip / "labels_semantic" / f"{i}.png")
            assert semantic.shape == (SIZE, SIZE) and semantic.dtype == np.uint8
            rgb = cv2.cvtColor(_png(clip / "labels_rgb" / f"{i}.png"), cv2.COLOR_BGR2RGB)
            assert (rgb == palette[semantic]).all()
            mask = _png(clip / "masks" / f"{i}.png")
            # the labelling rule: every visible pixel of a class in the mix is sounding, no other
            assert set(np.unique(mask).tolist()) <= {0, 255}
            assert ((mask == 255) == np.isin(semantic, sounding_ids)).all()
            present = set(np.unique(semantic).tolist()) - {0}
            assert present <= {CLASS_NAMES.index(name) for name in meta["visible_classes"]}


def test_a_second_split_is_merged_into_metadata(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert cli.main(["synth", "-q", "--out", str(out), "--clips", "3", "--seed", "1", "--size", "64"]) == 0
    assert cli.main(["synth", "-q", "--out", str(out), "--clips", "2", "--seed", "2", "--size", "64", "--split", "val"]) == 0
    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["split"], r["uid"]) for r in rows] == [("train", "s1-000000"), ("train", "s1-000001"), ("train", "s1-000002"), ("val", "s2-000000"), ("val", "s2-000001")]


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert cli.main(["synth", "--out", str(tmp_path / "x"), "--clips", "0"]) == 2
    assert "--clips" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mixed_clips() -> list:
    return [generate_clip(21, index, size=SIZE) for index in range(48)]


def test_every_class_appears_and_silent_distractors_are_common(mixed_clips) -> None:
    visible = {name for clip in mixed_clips for name in clip.meta["visible_classes"]}
    assert visible == set(CLASS_NAMES[1:])
    with_distractor = sum(bool(clip.meta["silent_classes"]) for clip in mixed_clips)
    assert with_distractor >= 0.8 * len(mixed_clips), with_distractor
    assert {tag for clip in mixed_clips for tag in clip.meta["tags"]} == set(KINDS)


def _check_tag_rules(clip) -> None:
    meta = clip.meta
    sounding = {c["name"]: c for c in meta["sounding_classes"]}
    ids = {c["id"] for c in meta["sounding_classes"]}
    area = clip.semantic.shape[1] * clip.semantic.shape[2]
    tags = set(meta["tags"])
    for c in meta["offscreen_classes"]:  # off-screen: in the mix, in no mask
        assert not (clip.semantic == c["id"]).any()
    assert ("offscreen" in tags) == bool(meta["offscreen_classes"])
    assert ("single" in tags) == (len(sounding) == 1)
    assert ("multi" in tags) == (2 <= len(sounding) <= 3)
    if "weak" in tags:
        levels = [c["level_db"] for c in sounding.values()]
        assert any(10.0 <= a - b <= 20.0 for a in levels for b in levels)
    if "small" in tags:
        shares = [(clip.semantic == c).reshape(5, -1).sum(1) / area for c in ids]
        assert any(s.max() > 0 and s.max() < SMALL_AREA for s in shares)
    if "multi-instance" in tags:
        counts = {}
        for inst in meta["instances"]:
            if inst["sounding"] and max(inst["visible_area"]) > 0:
                counts[inst["class"]] = counts.get(inst["class"], 0) + 1
        assert max(counts.values()) >= 2
    assert ((clip.masks == 1) == np.isin(clip.semantic, list(ids))).all()
    # the levels in meta are the levels in the audio: their power sum plus the noise is the mix
    powers = [10 ** (c["level_db"] / 10) for c in meta["sounding_classes"] + meta["offscreen_classes"]]
    expected = 10 * np.log10(sum(powers) + 10 ** (meta["noise_level_db"] / 10))
    assert abs(rms_db(clip.audio) - expected) < 1.5, (rms_db(clip.audio), expected)
    if powers:
        assert 9.5 <= meta["noise_snr_db"] <= 30.5


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_earns_its_tag_and_obeys_the_rules(kind: str) -> None:
    for index in range(4):
        clip = generate_clip(5, index, size=SIZE, kinds={kind: 1.0})
        assert kind in clip.meta["tags"], (kind, clip.meta["tags"])
        _check_tag_rules(clip)


def test_mixed_clips_obey_the_tag_rules(mixed_clips) -> None:
    for clip in mixed_clips:
        _check_tag_rules(clip)


def test_objects_move_between_frames(mixed_clips) -> None:
    moved = sum(not np.array_equal(clip.semantic[0], clip.semantic[4]) for clip in mixed_clips)
    assert moved >= 0.9 * len(mixed_clips)

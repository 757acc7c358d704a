"""Dataset loaders read tiny fixture trees in every layout, and malformed trees fail in one line."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ddavs_rt.errors import DataError
from ddavs_rt.train.datasets import ClipSample, collate_clips, open_dataset, voc_palette

torch.set_num_threads(1)

WAV_RATE = 8000
MODEL_RATE = 16000
SIDE = 32


# ------------------------------------------------------------------ fixture writers


def tone_hz(clip: int, second: int) -> float:
    """Each second of each clip has its own tone, so a window proves which second it holds."""
    return 300.0 + 200.0 * second + 40.0 * clip


def write_wav(path: Path, clip: int, seconds: int, extra_hz: float | None = None) -> None:
    t = np.arange(WAV_RATE) / WAV_RATE
    pieces = [0.5 * np.sin(2 * np.pi * tone_hz(clip, s) * t) for s in range(seconds)]
    signal = np.concatenate(pieces)
    if extra_hz is not None:
        signal = np.sin(2 * np.pi * extra_hz * np.arange(signal.size) / WAV_RATE) * 0.5
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(WAV_RATE)
        handle.writeframes((signal * 32767).astype("<i2").tobytes())


def frame_colour(clip: int, k: int) -> tuple[int, int, int]:
    return (20 + 22 * k, 60 + 30 * clip, 120)  # RGB


def write_frame(path: Path, clip: int, k: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    rgb[:] = frame_colour(clip, k)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def box_mask(k: int) -> np.ndarray:
    """Sounding box grows with the frame index: its area tells frames apart. {0, 1} [32, 32]."""
    mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
    mask[4 : 8 + 4 * k, 4:20] = 1
    return mask


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def build_s4(root: Path) -> Path:
    """The official AVSBench-object S4 download in miniature: Single-source/s4_meta_data.csv beside
    Single-source/s4_data/{visual_frames,audio_wav,gt_masks} (paths of avs_s4/config.py). Returns
    the Single-source folder."""
    top = root / "Single-source"
    data = top / "s4_data"
    rows = []
    for clip, (name, category, split) in enumerate([("vidA", "dog", "train"), ("vidB", "cat", "test")]):
        rows.append([name, 0, category, split])
        for k in range(1, 6):
            write_frame(data / "visual_frames" / split / category / name / f"{name}_{k}.png", clip, k - 1)
            if split != "train" or k == 1:
                write_png(data / "gt_masks" / split / category / name / f"{name}_{k}.png", box_mask(k - 1) * 255)
        write_wav(data / "audio_wav" / split / category / f"{name}.wav", clip, 5)
    write_csv(top / "s4_meta_data.csv", ["name", "start time", "category", "split"], rows)
    return top


def build_ms3(root: Path) -> Path:
    """Multi-sources/ms3_meta_data.csv beside Multi-sources/ms3_data/... (avs_ms3/config.py)."""
    top = root / "Multi-sources"
    data = top / "ms3_data"
    rows = []
    for clip, name in enumerate(["m1", "m2"]):
        rows.append([name, "val"])
        for k in range(1, 6):
            write_frame(data / "visual_frames" / name / f"{name}.mp4_{k}.png", clip, k - 1)
            write_png(data / "gt_masks" / "val" / name / f"{name}_{k}.png", box_mask(k - 1) * 255)
        write_wav(data / "audio_wav" / "val" / f"{name}.wav", clip, 5)
    write_csv(top / "ms3_meta_data.csv", ["video_id", "split"], rows)
    return top


def semantic_map(k: int, class_id: int) -> np.ndarray:
    return (box_mask(k) * class_id).astype(np.uint8)


def build_avss(root: Path) -> None:
    clips = [("u1", "v1s", "train", 5, "semantic"), ("u2", "v2", "train", 10, "semantic"), ("u3", "v1m", "train", 5, "rgb")]
    palette = voc_palette()
    for clip, (uid, label, split, n, kind) in enumerate(clips):
        base = root / label / uid
        for i in range(n):
            write_frame(base / "frames" / f"{i}.jpg", clip, i)
            ids = semantic_map(i, class_id=clip + 3)
            if kind == "semantic":  # a class-id PNG the official loader never reads: must be ignored
                write_png(base / "labels_semantic" / f"{i}.png", np.full_like(ids, 9))
            write_png(base / "labels_rgb" / f"{i}.png", cv2.cvtColor(palette[ids], cv2.COLOR_RGB2BGR))
        write_wav(base / "audio.wav", clip, n)
    write_csv(root / "metadata.csv", ["uid", "label", "split"], [[c[0], c[1], c[2]] for c in clips])


def build_synthavs(root: Path) -> None:
    classes = ["background", "drum", "dog", "car"]
    (root / "classes.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(classes))
    rows = []
    for clip, (uid, split) in enumerate([("s0", "train"), ("s1", "test")]):
        rows.append([uid, "synth", split])
        base = root / "synth" / uid
        for i in range(5):
            write_frame(base / "frames" / f"{i}.jpg", clip, i)
            ids = semantic_map(i, class_id=2)
            ids[24:30, 24:30] = 3  # a silent distractor: in the class map, not in the binary mask
            write_png(base / "labels_semantic" / f"{i}.png", ids)
            write_png(base / "masks" / f"{i}.png", box_mask(i) * 255)
        (base / "meta.json").write_text(json.dumps({"tags": ["single", "distractor"] if clip == 0 else ["off-screen"]}))
        write_wav(base / "audio.wav", clip, 5)
    write_csv(root / "metadata.csv", ["uid", "label", "split"], rows)


VPO_HEADER = ["cateName", "img_Id", "ann_Ids", "cateId", "vgg_file", "split", "multi_instance"]


def write_label_png(path: Path, ids: np.ndarray) -> None:
    """A mask as VPO ships it: one channel of raw COCO category ids (0 background, 255 ignore)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), mode="L").save(path)


def build_vpo(root: Path) -> tuple[Path, Path]:
    """VPO/ (CAVP config_vpo_*.py) beside a VGGSound root: VPO-SS with per-category folders and one
    mask per row, VPO-MS / VPO-MSMI with one image and one mask per image; masks hold COCO ids.
    Returns (VPO folder, VGGSound root)."""
    vpo, vgg = root / "VPO", root / "vggsound"
    ss = vpo / "VPO-SS"
    write_csv(ss / "vpo_ss_data_stereo.csv", VPO_HEADER[:-1], [
        ["dog", 7, 70, 18, "vggA", "train"], ["cat", 8, 80, 17, "vggB", "val"],
    ])
    for clip, (category, image_id, ann, coco) in enumerate([("dog", 7, 70, 18), ("cat", 8, 80, 17)]):
        write_frame(ss / "data" / category / f"{image_id:012d}.jpg", clip, 0)
        ids = np.zeros((SIDE, SIDE), dtype=np.uint8)
        ids[4:12, 4:12] = coco
        ids[12, 4:12] = 255  # the object's ignored border
        write_label_png(ss / "mask" / category / f"{image_id:012d}_{ann:012d}.png", ids)
    ms = vpo / "VPO-MS"
    # image 9: a cat and a dog, two sources; image 11: one dog
    write_csv(ms / "vpo_ms_data_stereo.csv", VPO_HEADER[:-1], [
        ["cat", 9, 90, 17, "vggB", "test"], ["dog", 9, 91, 18, "vggC", "test"], ["dog", 11, 110, 18, "vggA", "test"],
    ])
    for clip, image_id in enumerate([9, 11]):
        write_frame(ms / "data" / f"{image_id:012d}.jpg", clip, 0)
        ids = np.zeros((SIDE, SIDE), dtype=np.uint8)
        ids[0:10, 0:10] = 18
        if image_id == 9:
            ids[20:30, 0:10] = 17
        write_label_png(ms / "mask" / f"{image_id:012d}.png", ids)
    msmi = vpo / "VPO-MSMI"
    write_csv(msmi / "vpo_msmi_data_stereo.csv", VPO_HEADER, [
        ["dog", 11, 110, 18, "vggA", "test", 0],  # single instance: read from VPO-MS
        ["horse", 13, 130, 19, "vggC", "test", 1],
    ])
    write_frame(msmi / "data" / f"{13:012d}.jpg", 2, 0)
    ids = np.zeros((SIDE, SIDE), dtype=np.uint8)
    ids[5:9, 5:9] = 19
    write_label_png(msmi / "mask" / f"{13:012d}.png", ids)
    write_wav(vgg / "audios" / "vggA.wav", 0, 5)  # 5 s of per-second tones
    write_wav(vgg / "audios" / "vggB.wav", 0, 1, extra_hz=700.0)  # 1 s: shorter than the 3 s crop
    write_wav(vgg / "audios" / "vggC.wav", 0, 1, extra_hz=1300.0)
    return vpo, vgg


# ------------------------------------------------------------------ checks


def dominant_hz(window: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(window))
    return float(np.fft.rfftfreq(window.size, 1 / MODEL_RATE)[np.argmax(spectrum)])


def assert_tones(sample: ClipSample, clip: int, seconds: int) -> None:
    assert sample.audio.dtype == np.float32 and sample.audio.shape[1] == MODEL_RATE
    for t in range(seconds):
        assert dominant_hz(sample.audio[t]) == pytest.approx(tone_hz(clip, t), abs=3), f"window {t}"


def assert_colours(sample: ClipSample, clip: int, frames: int) -> None:
    for k in range(frames):
        assert np.abs(sample.frames[k].reshape(-1, 3).mean(0) - frame_colour(clip, k)).max() < 6, f"frame {k}"


def test_s4_train_has_first_mask_only_and_aligned_audio(tmp_path: Path) -> None:
    build_s4(tmp_path)
    dataset = open_dataset(tmp_path, "s4", "train", size=None, sample_rate=MODEL_RATE)
    assert len(dataset) == 1
    sample = dataset[0]
    assert sample.uid == "vidA" and sample.tags == ["dog"] and sample.semantic is None
    assert sample.frames.shape == (5, SIDE, SIDE, 3) and sample.frames.dtype == np.uint8
    assert sample.mask_valid.tolist() == [True, False, False, False, False]
    assert np.array_equal(sample.masks[0], box_mask(0)) and sample.masks[1:].sum() == 0
    assert_colours(sample, 0, 5)
    assert_tones(sample, 0, 5)


def test_s4_test_split_resizes_frames_bilinear_and_masks_nearest(tmp_path: Path) -> None:
    build_s4(tmp_path)
    sample = open_dataset(tmp_path, "s4", "test", size=16, sample_rate=MODEL_RATE)[0]
    assert sample.frames.shape == (5, 16, 16, 3) and sample.masks.shape == (5, 16, 16)
    assert sample.mask_valid.all()
    assert set(np.unique(sample.masks)) <= {0, 1}
    for k in range(5):
        expected = cv2.resize(box_mask(k), (16, 16), interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(sample.masks[k], expected)
    assert_tones(sample, 1, 5)


def test_ms3_reads_five_masks_and_batches_through_a_dataloader(tmp_path: Path) -> None:
    build_ms3(tmp_path)
    dataset = open_dataset(tmp_path, "ms3", "val", size=32, sample_rate=MODEL_RATE)
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_clips)))
    assert batch["uid"] == ["m1", "m2"]
    assert batch["frames"].shape == (2, 5, SIDE, SIDE, 3) and batch["audio"].shape == (2, 5, MODEL_RATE)
    assert batch["masks"].sum(dim=(2, 3))[1].tolist() == [int(box_mask(k).sum()) for k in range(5)]
    assert batch["semantic"] is None and batch["mask_valid"].all()
    assert_tones(dataset[1], 1, 5)


def test_avss_pads_v1_clips_to_ten_frames_and_reads_class_ids(tmp_path: Path) -> None:
    build_avss(tmp_path)
    dataset = open_dataset(tmp_path, "avss", "train", size=None, sample_rate=MODEL_RATE)
    by_uid = {dataset[i].uid: dataset[i] for i in range(len(dataset))}
    v1s, v2, v1m = by_uid["u1"], by_uid["u2"], by_uid["u3"]
    assert v1s.frames.shape[0] == 10 and v1s.frame_valid.tolist() == [True] * 5 + [False] * 5
    assert v1s.mask_valid.tolist() == [True] + [False] * 9  # v1s train: first frame labelled
    assert v1s.frames[5:].max() == 0 and np.abs(v1s.audio[5:]).max() == 0
    assert v1s.tags == ["v1s"]
    assert np.array_equal(v1s.semantic[0], semantic_map(0, 3)) and np.array_equal(v1s.masks[0], box_mask(0))
    assert v2.mask_valid.all() and np.array_equal(v2.semantic[9], semantic_map(9, 4))
    assert_tones(v2, 1, 10)
    assert_colours(v2, 1, 10)
    # labels_rgb only: the VOC palette is decoded back to class ids
    assert v1m.mask_valid[:5].all() and np.array_equal(v1m.semantic[4], semantic_map(4, 5))


def test_s4_and_ms3_open_from_every_folder_of_the_official_download(tmp_path: Path) -> None:
    single = build_s4(tmp_path)
    multi = build_ms3(tmp_path)
    for root in (tmp_path, single, single / "s4_data"):
        dataset = open_dataset(root, "s4", "test", size=None, sample_rate=MODEL_RATE)
        assert dataset.uids == ["vidB"] and np.array_equal(dataset[0].masks[3], box_mask(3))
    for root in (tmp_path, multi, multi / "ms3_data"):
        assert open_dataset(root, "ms3", "val", size=None, sample_rate=MODEL_RATE).uids == ["m1", "m2"]
    with pytest.raises(DataError) as excinfo:
        open_dataset(single / "s4_data" / "gt_masks", "s4", "test")
    message = one_line_error(excinfo)
    assert "Single-source/s4_meta_data.csv" in message and "s4_data/" in message


def floyd_steinberg_1bit(grey: np.ndarray) -> np.ndarray:
    """PIL's documented convert('1') for an 'L' image: Floyd-Steinberg error diffusion to 0/255,
    a pixel is white when its value plus the carried error is above 128 (libImaging tobilevel),
    error 7/16 right, 3/16 down-left, 5/16 down, 1/16 down-right."""
    h, w = grey.shape
    work = grey.astype(np.float64)
    out = np.zeros((h, w), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            value = min(max(work[y, x], 0.0), 255.0)
            out[y, x] = 1 if value > 128 else 0
            error = value - 255.0 * out[y, x]
            if x + 1 < w:
                work[y, x + 1] += error * 7 / 16
            if y + 1 < h:
                if x > 0:
                    work[y + 1, x - 1] += error * 3 / 16
                work[y + 1, x] += error * 5 / 16
                if x + 1 < w:
                    work[y + 1, x + 1] += error * 1 / 16
    return out


def test_s4_grey_mask_edges_are_binarised_as_pil_convert_1(tmp_path: Path) -> None:
    single = build_s4(tmp_path)
    grey = np.zeros((SIDE, SIDE), dtype=np.uint8)
    grey[8:24, 8:24] = 255
    grey[7, 8:24] = 60  # a faint anti-aliased edge above the box: > 0 but far below 128
    grey[24, 8:24] = 200  # a strong edge below it
    grey[8:24, 24] = 100
    path = single / "s4_data" / "gt_masks" / "test" / "cat" / "vidB" / "vidB_2.png"
    write_png(path, grey)
    sample = open_dataset(single, "s4", "test", size=None, sample_rate=MODEL_RATE)[0]
    expected = floyd_steinberg_1bit(grey)
    assert expected[7, 8:24].sum() < 16 and expected[24, 8:24].sum() > 0  # the rule differs from "> 0"
    assert not np.array_equal(expected, grey > 0)
    assert np.array_equal(sample.masks[1], expected)
    assert np.array_equal(sample.masks[0], box_mask(0))  # clean 0/255 masks are unchanged


def test_avss_train_scales_the_short_side_and_crops_the_centre(tmp_path: Path) -> None:
    """color_dataloader.py crop_resize_img: 48x32 -> short side 16 (long side int(48 * 16 / 32) =
    24) -> centre crop x from round((24 - 16) / 2) = 4; a labelled column pattern proves it."""
    root = tmp_path
    base = root / "v2" / "w1"
    palette = voc_palette()
    ids = np.zeros((32, 48), dtype=np.uint8)
    ids[:, 8:16] = 5  # columns 8..15 -> 4..7 after the 1/2 scale -> 0..3 after the crop at x = 4
    ids[:, 40:48] = 7  # columns 40..47 -> 20..23 -> cropped away
    for i in range(10):
        write_png(base / "frames" / f"{i}.jpg", np.full((32, 48, 3), 128, dtype=np.uint8))
        write_png(base / "labels_rgb" / f"{i}.png", cv2.cvtColor(palette[ids], cv2.COLOR_RGB2BGR))
    write_wav(base / "audio.wav", 0, 10)
    write_csv(root / "metadata.csv", ["uid", "label", "split"], [["w1", "v2", "train"], ["w1", "v2", "test"]])
    train = open_dataset(root, "avss", "train", size=16, sample_rate=MODEL_RATE)[0]
    assert train.semantic.shape == (10, 16, 16)
    assert (train.semantic[0][:, 0:4] == 5).all() and (train.semantic[0][:, 4:] == 0).all()
    # other splits squash 48 -> 16 with PIL NEAREST, which samples source column floor((x + 0.5) * 3):
    # x = 3, 4 -> 10, 13 (class 5); x = 2, 5 -> 7, 16 (background); x >= 13 -> 40.. (class 7)
    test = open_dataset(root, "avss", "test", size=16, sample_rate=MODEL_RATE)[0]
    row = test.semantic[0][0]
    assert row[3:5].tolist() == [5, 5] and row[2] == 0 and row[5] == 0 and (row[13:] == 7).all()


def test_synthavs_uses_binary_masks_meta_tags_and_class_list(tmp_path: Path) -> None:
    build_synthavs(tmp_path)
    train = open_dataset(tmp_path, "synthavs", "train", size=None, sample_rate=MODEL_RATE)
    sample = train[0]
    assert train.class_names == ["background", "drum", "dog", "car"] == sample.class_names
    assert sample.tags == ["single", "distractor"]
    assert sample.frames.shape[0] == 5 and sample.mask_valid.all() and sample.frame_valid.all()
    # the distractor (class 3) is in the semantic map but not sounding in the binary mask
    assert (sample.semantic[2] == 3).sum() == 36
    assert np.array_equal(sample.masks[2], box_mask(2))
    assert_tones(sample, 0, 5)
    test = open_dataset(tmp_path, "synthavs", "test", size=None, sample_rate=MODEL_RATE)
    assert test.uids == ["s1"] and test[0].tags == ["off-screen"]


def cavp_crop(wave: np.ndarray, length: int) -> np.ndarray:
    """CAVP crop_audio from its definition: mid = len // 2, st = mid - length // 2, python slice
    [st:st + length] (a negative st counts from the end), tiled by repeat when short."""
    mid = wave.shape[0] // 2
    st = mid - length // 2
    piece = wave[st : st + length]
    if piece.shape[0] != length:
        piece = np.tile(piece, length // piece.shape[0] + 1)[:length]
    return piece


def test_vpo_single_source_follows_cavp_paths_classes_ignore_and_centred_audio(tmp_path: Path) -> None:
    from ddavs_rt.train.datasets.media import decode_audio

    vpo, vgg = build_vpo(tmp_path)
    train = open_dataset(vpo, "vpo", "train", size=None, sample_rate=MODEL_RATE, subset="ss", audio_root=vgg)
    # CAVP class_list.py index_table_coco: background + 21 categories in alphabetical order
    assert train.class_names[:4] == ["background", "airplane", "baby", "bird"] and len(train.class_names) == 22
    sample = train[0]
    assert train.uids == ["7_70"] and sample.tags == ["ss", "dog"]
    dog = train.class_names.index("dog")
    assert (sample.semantic[0][4:12, 4:12] == dog).all() and (sample.semantic[0][12, 4:12] == 255).all()
    assert sample.masks[0].sum() == 64  # 255 is ignored, not an object
    length = 3 * MODEL_RATE
    assert sample.audio.shape == (1, length)
    expected = cavp_crop(decode_audio(vgg / "audios" / "vggA.wav", MODEL_RATE), length)
    np.testing.assert_array_equal(sample.audio[0], expected)
    # the 5 s file's centred 3 s are its seconds 1, 2 and 3
    assert dominant_hz(sample.audio[0][:MODEL_RATE]) == pytest.approx(tone_hz(0, 1), abs=3)
    assert dominant_hz(sample.audio[0][-MODEL_RATE:]) == pytest.approx(tone_hz(0, 3), abs=3)
    test = open_dataset(vpo, "vpo", "test", size=None, sample_rate=MODEL_RATE, subset="ss", audio_root=vgg)
    assert test.uids == ["8_80"]  # the CSV's "val" rows are CAVP's test split


def test_vpo_multi_source_remaps_coco_ids_per_pixel_and_sums_cropped_sources(tmp_path: Path) -> None:
    from ddavs_rt.train.datasets.media import decode_audio

    vpo, vgg = build_vpo(tmp_path)
    dataset = open_dataset(vpo / "VPO-MS", "vpo", "test", size=None, sample_rate=MODEL_RATE, subset="ms", audio_root=vgg)
    assert dataset.uids == ["9", "11"]
    both = dataset[0]
    names = dataset.class_names
    assert (both.semantic[0][0:10, 0:10] == names.index("dog")).all()
    assert (both.semantic[0][20:30, 0:10] == names.index("cat")).all()  # not painted with the last row's class
    assert both.tags == ["ms", "cat", "dog"]
    length = 3 * MODEL_RATE
    b = cavp_crop(decode_audio(vgg / "audios" / "vggB.wav", MODEL_RATE), length)
    c = cavp_crop(decode_audio(vgg / "audios" / "vggC.wav", MODEL_RATE), length)
    np.testing.assert_allclose(both.audio[0], b + c, atol=1e-6)  # summed, not averaged
    msmi = open_dataset(vpo, "vpo", "test", size=None, sample_rate=MODEL_RATE, subset="msmi", audio_root=vgg)
    assert msmi.plans[0].frames[0].image == vpo / "VPO-MS" / "data" / f"{11:012d}.jpg"  # multi_instance 0
    assert (msmi[1].semantic[0] == names.index("horse")).sum() == 16


def test_vpo_tree_and_audio_root_errors_name_what_is_expected(tmp_path: Path) -> None:
    vpo, vgg = build_vpo(tmp_path)
    with pytest.raises(DataError) as excinfo:
        open_dataset(vpo / "VPO-SS" / "data", "vpo", "train", subset="ss", audio_root=vgg)
    assert "VPO-SS/vpo_ss_data_stereo.csv" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        open_dataset(vpo, "vpo", "train", subset="ss", audio_root=tmp_path / "nowhere")
    assert "--audio-root" in one_line_error(excinfo)
    write_label_png(vpo / "VPO-SS" / "mask" / "dog" / f"{7:012d}_{70:012d}.png", np.full((SIDE, SIDE), 1, dtype=np.uint8))
    with pytest.raises(DataError) as excinfo:
        open_dataset(vpo, "vpo", "train", size=None, subset="ss", audio_root=vgg)[0]
    assert "COCO ids [1]" in one_line_error(excinfo)


# ------------------------------------------------------------------ malformed trees


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_column_is_named(tmp_path: Path) -> None:
    single = build_s4(tmp_path)
    write_csv(single / "s4_meta_data.csv", ["name", "split"], [["vidA", "train"]])
    with pytest.raises(DataError) as excinfo:
        open_dataset(tmp_path, "s4", "train", size=None)
    assert "'category'" in one_line_error(excinfo)


def test_missing_frame_is_named_at_construction(tmp_path: Path) -> None:
    multi = build_ms3(tmp_path)
    missing = multi / "ms3_data" / "visual_frames" / "m2" / "m2.mp4_4.png"
    missing.unlink()
    with pytest.raises(DataError) as excinfo:
        open_dataset(tmp_path, "ms3", "val", size=None)
    assert str(missing) in one_line_error(excinfo)


def test_missing_audio_is_named_at_construction(tmp_path: Path) -> None:
    build_synthavs(tmp_path)
    missing = tmp_path / "synth" / "s0" / "audio.wav"
    missing.unlink()
    with pytest.raises(DataError) as excinfo:
        open_dataset(tmp_path, "synthavs", "train", size=None)
    assert str(missing) in one_line_error(excinfo)


def test_missing_vpo_column_and_unknown_layout(tmp_path: Path) -> None:
    vpo, vgg = build_vpo(tmp_path)
    write_csv(vpo / "VPO-MS" / "vpo_ms_data_stereo.csv", ["cateName", "img_Id", "ann_Ids", "cateId", "split"], [["dog", 9, 91, 18, "test"]])
    with pytest.raises(DataError) as excinfo:
        open_dataset(vpo, "vpo", "test", subset="ms", audio_root=vgg)
    assert "'vgg_file'" in one_line_error(excinfo)
    with pytest.raises(DataError) as excinfo:
        open_dataset(tmp_path, "coco", "train")
    assert "unknown dataset layout" in one_line_error(excinfo)


def test_undecodable_audio_is_a_one_line_error_when_read(tmp_path: Path) -> None:
    build_synthavs(tmp_path)
    broken = tmp_path / "synth" / "s0" / "audio.wav"
    broken.write_bytes(b"this is not a wav file")
    dataset = open_dataset(tmp_path, "synthavs", "train", size=None)
    with pytest.raises(DataError) as excinfo:
        dataset[0]
    assert str(broken) in one_line_error(excinfo)

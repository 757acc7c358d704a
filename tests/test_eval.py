"""ddavs-rt eval: table per tag present, JSON written, --shuffle-audio feeds other clips' audio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddavs_rt.cli import main as cli_main
from ddavs_rt.config import ModelConfig
from ddavs_rt.model.checkpoint import save_checkpoint
from ddavs_rt.model.ddavs import build_model
from ddavs_rt.train.datasets import open_dataset
from ddavs_rt.train.evaluate import ClipSelection, derangement, evaluate_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "3", "--seed", "31", "--size", "32", "--split", "test"]) == 0
    assert cli_main(["synth", "-q", "--out", str(data), "--clips", "2", "--seed", "32", "--size", "32", "--split", "test", "--subsets", "single"]) == 0
    cfg = ModelConfig.model_validate({
        "name": "eval-tiny", "input_size": 32,
        "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1]},
        "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
        "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "bank_refinement": False},
        "com": {"enabled": False}, "avam": {"heads": 4}, "decoder": {"hidden_dim": 16},
    })
    torch.manual_seed(0)
    save_checkpoint(root / "ckpt", build_model(cfg).eval(), cfg)
    return root


def test_table_covers_the_tags_and_json_is_written(setup: Path, capsys: pytest.CaptureFixture) -> None:
    out = setup / "eval.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(setup / "data"),
                     "--batch-size", "2", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    tags = sorted({t for plan in dataset.plans for t in plan.tags})
    assert "single" in tags
    report = json.loads(out.read_text())
    assert sorted(report["per_tag"]) == tags
    assert report["batch_size"] == 10 and report["num_frames"] == 5 * len(dataset)  # 2 clips x 5 frames
    assert "metric batch 10 frames" in table
    for tag in tags:
        line = next(row for row in table.splitlines() if row.split() and row.split()[0] == tag)
        assert f"{report['per_tag'][tag]['jf']:.4f}" in line
    assert 0.0 <= report["jf"] <= 1.0 and report["shuffle_audio"] is False


def test_tags_option_narrows_the_clips(setup: Path) -> None:
    out = setup / "single.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(setup / "data"),
                     "--tags", "single", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    assert report["num_clips"] == sum("single" in plan.tags for plan in dataset.plans)
    assert report["per_tag"]["single"]["num_frames"] == report["num_frames"]


def test_shuffle_audio_feeds_another_clips_audio(setup: Path) -> None:
    dataset = open_dataset(setup / "data", "synthavs", "test", size=32)
    n = len(dataset)
    partner = derangement(n, seed=5)
    assert partner == derangement(n, seed=5) and all(partner[i] != i for i in range(n))
    assert sorted(partner) == list(range(n))
    model = build_model(ModelConfig.model_validate(json.loads((setup / "ckpt/config.json").read_text())))
    fed: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, inputs: fed.append(inputs[1].clone()))
    evaluate_model(model, ClipSelection(dataset, list(range(n)), partner), batch_size=1)
    for i in range(n):
        assert torch.equal(fed[i], torch.from_numpy(dataset[partner[i]].audio))
        assert not torch.equal(fed[i], torch.from_numpy(dataset[i].audio))


# ------------------------------------------------------------------ semantic protocols


def write_wav(path: Path, seconds: int) -> None:
    import wave

    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.sin(np.arange(16000 * seconds) * 0.1) * 8000).astype("<i2").tobytes())


def build_avss(root: Path) -> None:
    """avs_released/ in miniature: metadata.csv, label2idx.json (71 names), a 5-frame v1m clip and a
    10-frame v2 clip in the test split, palette label PNGs."""
    import cv2
    import numpy as np

    from ddavs_rt.train.datasets import voc_palette

    names = ["background"] + [f"c{i}" for i in range(1, 71)]
    (root / "label2idx.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "label2idx.json").write_text(json.dumps({n: i for i, n in enumerate(names)}))
    palette = voc_palette()
    for uid, label, n, cls in (("a", "v1m", 5, 3), ("b", "v2", 10, 12)):
        for i in range(n):
            frame = np.full((32, 32, 3), 90, dtype=np.uint8)
            cv2.imwrite(str((root / label / uid / "frames").mkdir(parents=True, exist_ok=True) or root / label / uid / "frames" / f"{i}.jpg"), frame)
            ids = np.zeros((32, 32), dtype=np.uint8)
            ids[2 : 6 + 2 * i, 4:20] = cls
            (root / label / uid / "labels_rgb").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / label / uid / "labels_rgb" / f"{i}.png"), cv2.cvtColor(palette[ids], cv2.COLOR_RGB2BGR))
        write_wav(root / label / uid / "audio.wav", n)
    (root / "metadata.csv").write_text("uid,label,split\na,v1m,test\nb,v2,test\n")


class BoxPredictor(torch.nn.Module):
    """Stands for a trained network so the protocol can be checked by hand: class 3 in rows 4..11,
    columns 4..19 of every frame (padding slots included), background elsewhere."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        n, h, w = frames.shape[:3]
        logits = torch.zeros(n, self.num_classes, h, w)
        logits[:, 0] = 1.0
        logits[:, 3, 4:12, 4:20] = 2.0
        return logits


def official_avss_per_frame(preds: list[torch.Tensor], labels: list[torch.Tensor], nclass: int) -> tuple[float, float]:
    """avss/utils/compute_color_metrics.py `_batch_miou_fscore` and the test.py reduction, from
    their definition: ids shifted by one, torch.histc over [1, nclass], per-class sums over frames
    divided by the frames where the class's union > 0 (NaN -> 0), mean over all nclass classes."""
    ious, fscores, counts = torch.zeros(nclass), torch.zeros(nclass), torch.zeros(nclass)
    for pred, target in zip(preds, labels):
        predict = (pred + 1).float()
        target = target.float() + 1
        predict = predict * (target > 0).float()
        inter = predict * (predict == target).float()
        area_inter = torch.histc(inter, bins=nclass, min=1, max=nclass)
        area_pred = torch.histc(predict, bins=nclass, min=1, max=nclass)
        area_lab = torch.histc(target, bins=nclass, min=1, max=nclass)
        union = area_pred + area_lab - area_inter
        ious += area_inter / (2.220446049250313e-16 + union)
        counts[torch.nonzero(union).squeeze(-1)] += 1
        precision, recall = area_inter / area_pred, area_inter / area_lab
        f = 1.3 * precision * recall / (0.3 * precision + recall)
        f[torch.isnan(f)] = 0.0
        fscores += f
    miou = ious / counts
    miou[torch.isnan(miou)] = 0
    fs = fscores / counts
    fs[torch.isnan(fs)] = 0
    return float(miou.mean()), float(fs.mean())


def test_avss_is_scored_per_frame_over_71_classes_with_padding_slots(tmp_path: Path) -> None:
    from ddavs_rt.metrics import SEMANTIC_PER_FRAME
    from ddavs_rt.train.evaluate import evaluate_semantic

    build_avss(tmp_path)
    dataset = open_dataset(tmp_path, "avss", "test", size=32)
    result = evaluate_semantic(BoxPredictor(71), ClipSelection(dataset, [0, 1]), 71, SEMANTIC_PER_FRAME, batch_size=1)
    box = torch.zeros(32, 32, dtype=torch.long)
    box[4:12, 4:20] = 3
    preds, labels = [], []
    for i in range(2):
        sample = dataset[i]
        for t in range(10):  # all ten slots; v1m slots 5..9 are padding with an all-background label
            preds.append(box)
            labels.append(torch.from_numpy(sample.semantic[t]).long() if sample.frame_valid[t] else torch.zeros(32, 32, dtype=torch.long))
    miou, f = official_avss_per_frame(preds, labels, 71)
    assert result.num_frames == 20 and result.protocol == SEMANTIC_PER_FRAME
    assert result.miou == pytest.approx(miou, abs=1e-6) and result.f == pytest.approx(f, abs=1e-6)
    # without the padding slots the figure would differ: they add background-only frames
    miou_real, _ = official_avss_per_frame(preds[:5] + preds[10:], labels[:5] + labels[10:], 71)
    assert abs(miou_real - miou) > 1e-4 and result.miou != pytest.approx(miou_real, abs=1e-5)


def test_eval_cli_names_the_avss_protocol_and_refuses_a_binary_checkpoint(
    tmp_path: Path, setup: Path, capsys: pytest.CaptureFixture,
) -> None:
    build_avss(tmp_path / "avss")
    cfg = ModelConfig.model_validate({
        "name": "eval-avss", "input_size": 32, "class_names": ["background"] + [f"c{i}" for i in range(1, 71)],
        "visual": {"variant": "b0", "embed_dims": [16, 32, 40, 64], "depths": [1, 1, 1, 1]},
        "audio": {"kind": "small", "channels": [8, 16, 16], "dim": 32},
        "aqm": {"num_queries": 2, "layers": 1, "heads": 4, "bank_refinement": False},
        "com": {"enabled": False}, "avam": {"heads": 4}, "decoder": {"hidden_dim": 16, "num_classes": 71},
    })
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt", build_model(cfg).eval(), cfg)
    out = tmp_path / "avss.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(tmp_path / "ckpt"), "--data", str(tmp_path / "avss"),
                     "--layout", "avss", "--frame-size", "32", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "avss-per-frame" and "per-frame mIoU" in report["protocol_title"]
    assert report["num_frames"] == 20 and len(report["per_class_iou"]) == 71
    assert "protocol avss-per-frame" in capsys.readouterr().out
    code = cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(tmp_path / "avss"),
                     "--layout", "avss", "--frame-size", "32"])
    assert code != 0
    assert "scores 71 classes but the checkpoint predicts 1" in capsys.readouterr().err


def cavp_dataset_level(preds: list[torch.Tensor], labels: list[torch.Tensor], nclass: int) -> tuple[float, float]:
    """CAVP utils/eval_utils.py from its definition. MIoU: label 255 -> -1, ids shifted by one,
    torch.histc over [1, nclass] summed over the dataset, iou = inter / (spacing(1) + union),
    mean over all nclass classes. ForegroundDetect: confusion matrix of pixels whose label is in
    [0, nclass) and not 255, F_0.3 = 1.3 tp / (1.3 tp + 0.3 fn + fp), nanmean over classes."""
    import numpy as np

    inter_sum, union_sum = np.zeros(nclass), np.zeros(nclass)
    confusion = np.zeros((nclass, nclass))
    for pred, label in zip(preds, labels):
        target = label.clone()
        target[target == 255] = -1
        predict = (pred + 1) * (target + 1 > 0).long()
        target1 = target + 1
        intersection = predict * (predict == target1).long()
        area_inter = torch.histc(intersection.float(), bins=nclass, max=nclass, min=1).numpy()
        area_pred = torch.histc(predict.float(), bins=nclass, max=nclass, min=1).numpy()
        area_lab = torch.histc(target1.float(), bins=nclass, max=nclass, min=1).numpy()
        inter_sum += area_inter
        union_sum += area_pred + area_lab - area_inter
        lt, lp = label.numpy().ravel(), pred.numpy().ravel()
        keep = (lt >= 0) & (lt < nclass) & (lt != 255)
        confusion += np.bincount(nclass * lt[keep] + lp[keep], minlength=nclass**2).reshape(nclass, nclass)
    miou = float((inter_sum / (np.spacing(1) + union_sum)).mean())
    tp = np.diag(confusion)
    fp, fn = confusion.sum(0) - tp, confusion.sum(1) - tp
    with np.errstate(invalid="ignore"):
        f = float(np.nanmean(1.3 * tp / (1.3 * tp + 0.3 * fn + fp)))
    return miou, f


def test_vpo_is_scored_dataset_level_as_cavp_with_255_ignored(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from ddavs_rt.metrics import SEMANTIC_DATASET_LEVEL
    from ddavs_rt.train.evaluate import evaluate_semantic

    folder = tmp_path / "VPO" / "VPO-SS"
    folder.mkdir(parents=True)
    rows = ["cateName,img_Id,ann_Ids,cateId,vgg_file,split"]
    for k, (cat, coco) in enumerate([("cat", 17), ("dog", 18), ("dog", 18)]):
        rows.append(f"{cat},{k + 1},{k + 10},{coco},v{k},test")
        (folder / "data" / cat).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32, 3), 100, dtype=np.uint8)).save(folder / "data" / cat / f"{k + 1:012d}.jpg")
        ids = np.zeros((32, 32), dtype=np.uint8)
        ids[2 + 3 * k : 14 + 3 * k, 6:18] = coco
        ids[0:2, :] = 255  # ignored rows where the predictor says "cat": they must not count
        (folder / "mask" / cat).mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids, mode="L").save(folder / "mask" / cat / f"{k + 1:012d}_{k + 10:012d}.png")
        write_wav(tmp_path / "vgg" / "audios" / f"v{k}.wav", 4)
    (folder / "vpo_ss_data_stereo.csv").write_text("\n".join(rows) + "\n")
    dataset = open_dataset(tmp_path / "VPO", "vpo", "test", size=32, subset="ss", audio_root=tmp_path / "vgg", audio_seconds=1.0)

    class Predictor(BoxPredictor):
        def forward(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
            logits = super().forward(frames, audio)
            logits[:, 6, 0:2, :] = 5.0  # "cat" on the ignored rows
            return logits

    result = evaluate_semantic(Predictor(22), ClipSelection(dataset, [0, 1, 2]), 22, SEMANTIC_DATASET_LEVEL, batch_size=2)
    preds = [Predictor(22)(torch.zeros(1, 32, 32, 3), torch.zeros(1, 16000))[0].argmax(0) for _ in range(3)]
    labels = [torch.from_numpy(dataset[i].semantic[0]).long() for i in range(3)]
    miou, f = cavp_dataset_level(preds, labels, 22)
    assert result.protocol == SEMANTIC_DATASET_LEVEL and result.num_frames == 3
    assert result.miou == pytest.approx(miou, abs=1e-9) and result.f == pytest.approx(f, abs=1e-9)
    assert 0 < miou < 1 and labels[0][0, 0] == 255


def test_eval_cli_opens_the_s4_download_unchanged_and_names_the_binary_protocol(
    tmp_path: Path, setup: Path, capsys: pytest.CaptureFixture,
) -> None:
    """Single-source/s4_meta_data.csv beside Single-source/s4_data/... as the archive unpacks;
    `--data` is the archive folder, and a wrong folder is refused in one line naming the files."""
    import cv2
    import numpy as np

    top = tmp_path / "avsbench_data" / "Single-source"
    data = top / "s4_data"
    for k in range(1, 6):
        frame_dir = data / "visual_frames" / "test" / "dog" / "vid"
        mask_dir = data / "gt_masks" / "test" / "dog" / "vid"
        frame_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(frame_dir / f"vid_{k}.png"), np.full((32, 32, 3), 60 * k % 255, dtype=np.uint8))
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[4:20, 4:20] = 255
        cv2.imwrite(str(mask_dir / f"vid_{k}.png"), mask)
    write_wav(data / "audio_wav" / "test" / "dog" / "vid.wav", 5)
    (top / "s4_meta_data.csv").write_text("name,start time,category,split\nvid,0,dog,test\n")
    out = tmp_path / "s4.json"
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(tmp_path / "avsbench_data"),
                     "--layout", "s4", "--frame-size", "32", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "avsbench-tpavi" and report["num_frames"] == 5 and report["layout"] == "s4"
    capsys.readouterr()
    assert cli_main(["eval", "-q", "--checkpoint", str(setup / "ckpt"), "--data", str(data / "gt_masks"),
                     "--layout", "s4", "--frame-size", "32"]) != 0
    err = capsys.readouterr().err.strip()
    assert "Single-source/s4_meta_data.csv" in err and len(err.splitlines()) == 1

"""The study report: per-seed eval JSONs become mean +- std cells in the right rows and columns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ddavs_rt.train.study import collect, main


def _eval(jf_all: float, single: float) -> dict:
    def block(jf: float) -> dict:
        return {"j": jf - 0.05, "f": jf + 0.05, "jf": jf}

    tags = {tag: block(0.5) for tag in ("multi", "multi-instance", "weak", "small", "offscreen")}
    return {**block(jf_all), "per_tag": {"single": block(single), **tags}}


def _run(root: Path, name: str, seed: int, jf_all: float, single: float, shuffled: float, checkpoint: Path) -> None:
    folder = root / name / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "eval_test.json").write_text(json.dumps(_eval(jf_all, single)))
    (folder / "eval_test_shuffled.json").write_text(json.dumps(_eval(shuffled, shuffled)))
    (folder / "train_log.csv").write_text("epoch,step,val_jf,time_s\n1,10,0.40,60\n2,20,0.45,120\n")
    shutil.copytree(checkpoint, folder / "best")


def test_tables_average_seeds_and_mark_missing_rows(tmp_path: Path, checkpoint: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "tiny-full", 0, 0.70, 0.80, 0.40, checkpoint)
    _run(runs, "tiny-full", 1, 0.60, 0.70, 0.40, checkpoint)
    _run(runs, "tiny-baseline", 0, 0.50, 0.55, 0.45, checkpoint)
    (runs / "tiny-aqm" / "seed0").mkdir(parents=True)  # started, never evaluated: left out
    found = collect(runs)
    assert sorted(found) == ["tiny-baseline", "tiny-full"]
    full = found["tiny-full"]
    assert [s.seed for s in full.seeds] == [0, 1] and full.seeds[0].best_val_jf == pytest.approx(0.45)
    assert full.model["params_m"] > 1 and full.model["input_size"] == 160

    assert main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "study-tables.md").read_text()
    full_row = next(line for line in text.splitlines() if line.startswith("| Full (DDAVS) |"))
    # single 0.80 / 0.70 -> 0.750 +- 0.071; all 0.70 / 0.60 -> 0.650; drop 0.30 / 0.20 -> 0.250
    assert full_row.split(" | ")[1:3] == ["0,1", "0.750 ± 0.071"]
    assert "0.650 ± 0.071" in full_row and "0.250 ± 0.071" in full_row
    assert "| +AQM | - | not run" in text
    assert "| DDESeg | not run" in text
    assert json.loads((tmp_path / "out" / "study.json").read_text())["tiny-baseline"]["seeds"][0]["shuffled_jf"] == 0.45
    assert (tmp_path / "out" / "study-curves.png").read_bytes()[:4] == b"\x89PNG"


def test_saved_study_json_renders_again_with_bench_speeds(tmp_path: Path, checkpoint: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "tiny-full", 0, 0.70, 0.80, 0.40, checkpoint)
    _run(runs, "tiny-full", 1, 0.60, 0.70, 0.40, checkpoint)
    assert main(["--runs", str(runs), "--out", str(tmp_path / "first")]) == 0
    shutil.rmtree(runs)  # the runs are gone; the saved JSON is all there is
    bench = tmp_path / "bench"
    bench.mkdir()
    rows = [{"backend": "onnxruntime", "batch": 1, "median_ms": 4.0}, {"backend": "torch", "batch": 1, "median_ms": 10.0},
            {"backend": "onnxruntime", "batch": 8, "median_ms": 20.0}]
    (bench / "tiny-full.json").write_text(json.dumps({"results": rows}))
    saved = tmp_path / "first" / "study.json"
    assert main(["--from-json", str(saved), "--bench", str(bench), "--out", str(tmp_path / "again")]) == 0
    text = (tmp_path / "again" / "study-tables.md").read_text()
    full_row = next(line for line in text.splitlines() if line.startswith("| Full (DDAVS) |"))
    assert full_row.split(" | ")[1:3] == ["0,1", "0.750 ± 0.071"]  # the same cells as from the runs
    cost_row = [line for line in text.splitlines() if line.startswith("| DDAVS |")][-1]
    assert " | 250 | 100 | " in cost_row  # 1000 / 4 ms and 1000 / 10 ms at batch 1; batch 8 ignored
    again = json.loads((tmp_path / "again" / "study.json").read_text())["tiny-full"]
    assert again["fps_batch1"] == {"onnxruntime": 250.0, "torch": 100.0}
    assert again["seeds"] == json.loads(saved.read_text())["tiny-full"]["seeds"]


def test_a_corrupt_saved_study_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "study.json"
    bad.write_text('{"tiny-full": {"seeds": [{"seed": 0}]}}')
    assert main(["--from-json", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "is not a study.json" in capsys.readouterr().err


def test_no_runs_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--runs", str(tmp_path / "nothing")]) == 2
    assert "run scripts/run_study.sh first" in capsys.readouterr().err


def test_qualitative_grid_has_a_row_per_tag_and_a_column_per_model(tmp_path: Path, checkpoint: Path) -> None:
    import cv2
    import numpy as np

    from ddavs_rt.cli import main as cli_main
    from ddavs_rt.train.qualitative import CELL, LABEL_HEIGHT, frame_iou
    from ddavs_rt.train.qualitative import main as grid_main

    assert cli_main(["synth", "-q", "--out", str(tmp_path / "d"), "--clips", "3", "--seed", "5", "--split", "test",
                     "--size", "64", "--subsets", "single"]) == 0
    out = tmp_path / "grid.png"
    assert grid_main(["--data", str(tmp_path / "d"), "--model", f"a={checkpoint}", "--model", f"b={checkpoint}",
                      "--tags", "single", "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image.shape == (CELL + LABEL_HEIGHT, 4 * CELL, 3)
    assert grid_main(["--data", str(tmp_path / "d"), "--model", f"a={checkpoint}", "--tags", "offscreen",
                      "--out", str(tmp_path / "none.png")]) == 2  # no clip carries the tag: one-line error
    assert not (tmp_path / "none.png").exists()
    empty = np.zeros((4, 4), dtype=bool)
    half = empty.copy()
    half[:2] = True
    assert frame_iou(empty, empty) == 1.0 and frame_iou(half, empty) == 0.0 and frame_iou(half[:, ::-1] | half, half) == 1.0

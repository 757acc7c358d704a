"""`python -m ddavs_rt.train.study --runs runs/budget --out docs/results`: the ablation and comparison tables.

Reads every RUNS/<config>/seed<k>/ made by scripts/run_study.sh (eval_test.json,
eval_test_shuffled.json, train_log.csv, best/config.json) and the ONNX Runtime benchmark
RUNS/<config>/bench.json where present, and writes OUT/study.json (every number, per seed),
OUT/study-tables.md (Table 3, Table 4 and the method comparison as mean +- std over seeds) and
OUT/study-curves.png (validation J&F per epoch of every row).
Nothing here trains or evaluates: the tables are only as fresh as the runs.

`--from-json OUT/study.json` renders the same files again from a saved study.json when the runs
are gone; `--bench DIR` takes each config's batch-1 speed from DIR/<config>.json (a
`ddavs-rt bench --json` report) instead of RUNS/<config>/bench.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddavs_rt.atomic import atomic_path, atomic_write_text
from ddavs_rt.config import ModelConfig, load_config

logger = logging.getLogger(__name__)

TAGS = ("single", "multi", "multi-instance", "weak", "small", "offscreen")
TABLE3 = (("Baseline", "tiny-baseline"), ("+AQM", "tiny-aqm"), ("+AQM+COM", "tiny-aqm-com"), ("+AVAM", "tiny-avam"), ("Full (DDAVS)", "tiny-full"))
TABLE4 = (("{1}", "tiny-pos-1"), ("{4}", "tiny-pos-4"), ("{3,4}", "tiny-full"), ("{1,2,3,4}", "tiny-pos-1234"))
METHODS = (("Baseline (head fusion)", "tiny-baseline"), ("DDESeg", "ddeseg-tiny"), ("SDAVS", "sdavs-tiny"), ("DDAVS", "tiny-full"))
ABLATION_TAGS = ("single", "multi", "weak", "offscreen")


@dataclass
class SeedRun:
    seed: int
    scores: dict[str, dict[str, float]]  # "all" and each tag -> {j, f, jf}
    shuffled_jf: float
    best_val_jf: float
    epochs: int
    train_seconds: float
    val_curve: list[float] = field(default_factory=list)  # validation J&F per epoch


@dataclass
class ConfigRuns:
    name: str
    seeds: list[SeedRun] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)  # params, gmacs, input_size
    fps: dict[str, float] = field(default_factory=dict)  # backend -> frames/s at batch 1


def _scores(report: dict) -> dict[str, dict[str, float]]:
    scores = {"all": {k: float(report[k]) for k in ("j", "f", "jf")}}
    for tag, sub in report.get("per_tag", {}).items():
        scores[tag] = {k: float(sub[k]) for k in ("j", "f", "jf")}
    return scores


def _read_log(path: Path) -> tuple[list[float], float]:
    """Validation J&F per epoch and the training seconds of a run's train_log.csv."""
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    return [float(r["val_jf"]) for r in rows if r.get("val_jf")], float(rows[-1]["time_s"]) if rows else float("nan")


def _model_info(folder: Path) -> dict[str, Any]:
    from ddavs_rt.model.info import measure

    cfg = load_config(folder / "config.json", ModelConfig)
    info = measure(cfg)
    return {"input_size": cfg.input_size, "params_m": info.total_params / 1e6, "gmacs": info.total_flops / 2e9, "variant": cfg.variant}


def _batch1_fps(report: Path) -> dict[str, float]:
    """backend -> frames/s at batch 1 of a `ddavs-rt bench --json` report."""
    return {row["backend"]: 1000.0 / float(row["median_ms"]) for row in json.loads(report.read_text())["results"] if row["batch"] == 1}


def collect(runs: Path, with_model_info: bool = True) -> dict[str, ConfigRuns]:
    found: dict[str, ConfigRuns] = {}
    for config_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        entry = ConfigRuns(config_dir.name)
        for seed_dir in sorted(config_dir.glob("seed*")):
            plain, shuffled = seed_dir / "eval_test.json", seed_dir / "eval_test_shuffled.json"
            if not (plain.is_file() and shuffled.is_file()):
                logger.info("%s: not evaluated yet, left out", seed_dir)
                continue
            curve, seconds = _read_log(seed_dir / "train_log.csv")
            entry.seeds.append(SeedRun(
                seed=int(seed_dir.name[4:]), scores=_scores(json.loads(plain.read_text())),
                shuffled_jf=float(json.loads(shuffled.read_text())["jf"]), best_val_jf=max(curve, default=float("nan")),
                epochs=len(curve), train_seconds=seconds, val_curve=curve,
            ))
        if not entry.seeds:
            continue
        if with_model_info:
            entry.model = _model_info(config_dir / f"seed{entry.seeds[0].seed}" / "best")
        bench = config_dir / "bench.json"
        if bench.is_file():
            entry.fps = _batch1_fps(bench)
        found[entry.name] = entry
    return found


def from_json(data: dict[str, Any]) -> dict[str, ConfigRuns]:
    """The inverse of `to_json`: a saved study.json back into runs."""
    return {
        name: ConfigRuns(
            name, seeds=[SeedRun(**seed) for seed in item["seeds"]], model=dict(item.get("model", {})),
            fps={k: float(v) for k, v in item.get("fps_batch1", {}).items()},
        )
        for name, item in data.items()
    }


def add_bench(found: dict[str, ConfigRuns], bench_dir: Path) -> None:
    """Batch-1 speeds from bench_dir/<config>.json where present."""
    for name, entry in found.items():
        report = bench_dir / f"{name}.json"
        if report.is_file():
            entry.fps = _batch1_fps(report)


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def _metric(entry: ConfigRuns, tag: str, key: str = "jf") -> list[float]:
    return [s.scores[tag][key] for s in entry.seeds if tag in s.scores]


def _ablation_table(rows: tuple[tuple[str, str], ...], found: dict[str, ConfigRuns], first: str) -> list[str]:
    head = [first, "seeds", *(f"{t} J&F" for t in ABLATION_TAGS), "all J&F", "shuffled-audio drop (all)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, name in rows:
        entry = found.get(name)
        if entry is None:
            lines.append(f"| {label} | - | " + " | ".join("not run" for _ in head[2:]) + " |")
            continue
        drops = [s.scores["all"]["jf"] - s.shuffled_jf for s in entry.seeds]
        cells = [label, ",".join(str(s.seed) for s in entry.seeds), *(_mean_std(_metric(entry, t)) for t in ABLATION_TAGS),
                 _mean_std(_metric(entry, "all")), _mean_std(drops)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _comparison_tables(found: dict[str, ConfigRuns]) -> list[str]:
    lines = []
    for key, title in (("jf", "J&F"), ("j", "J (mIoU)"), ("f", "F (beta^2 = 0.3)")):
        head = ["method", *TAGS, "all"]
        lines += [f"**{title}**, mean ± std over seeds", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, name in METHODS:
            entry = found.get(name)
            cells = [label, *(_mean_std(_metric(entry, t, key)) if entry else "not run" for t in (*TAGS, "all"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    head = ["method", "seeds", "params (M)", "GMACs (the papers' 'GFLOPs')", "ORT CPU fps (batch 1)", "torch CPU fps (batch 1)", "shuffled-audio drop (all)", "train time / seed (min)"]
    lines += ["**Cost and audio reliance**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, name in METHODS:
        entry = found.get(name)
        if entry is None:
            lines.append(f"| {label} | - | " + " | ".join("not run" for _ in head[2:]) + " |")
            continue
        model = entry.model
        ort, torch_fps = entry.fps.get("onnxruntime"), entry.fps.get("torch")
        drops = [s.scores["all"]["jf"] - s.shuffled_jf for s in entry.seeds]
        cells = [
            label, ",".join(str(s.seed) for s in entry.seeds),
            f"{model['params_m']:.2f}" if model else "-", f"{model['gmacs']:.3f}" if model else "-",
            f"{ort:.0f}" if ort else "not measured", f"{torch_fps:.0f}" if torch_fps else "not measured",
            _mean_std(drops), f"{statistics.fmean(s.train_seconds for s in entry.seeds) / 60:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render(found: dict[str, ConfigRuns], runs: Path | str) -> str:
    any_entry = next(iter(found.values()), None)
    size = any_entry.model.get("input_size") if any_entry and any_entry.model else "?"
    lines = [
        "# Study tables (generated by `python -m ddavs_rt.train.study`; do not edit by hand)",
        "",
        f"Runs: `{runs}` (scripts/run_study.sh, configs/train/budget/*.yaml). Graph {size}x{size}; test set",
        "data/synthavs-test (300 clips, seed 987654, never trained on), evaluated at 224x224 frames with the",
        "best-validation checkpoint of each seed. Cells are mean ± sample std over seeds. 'shuffled-audio drop'",
        "is J&F minus J&F when every clip is paired with another clip's audio (`ddavs-rt eval --shuffle-audio`).",
        "",
        "## Table 3: components",
        "",
        *_ablation_table(TABLE3, found, "row"),
        "",
        "## Table 4: AVAM injection positions (AQM and COM on)",
        "",
        *_ablation_table(TABLE4, found, "positions"),
        "",
        "## Comparison: DDAVS vs DDESeg vs SDAVS vs the baseline (same encoders, same budget)",
        "",
        *_comparison_tables(found),
        "",
    ]
    return "\n".join(lines)


def to_json(found: dict[str, ConfigRuns]) -> dict[str, Any]:
    return {
        name: {
            "model": entry.model, "fps_batch1": entry.fps,
            "seeds": [{"seed": s.seed, "scores": s.scores, "shuffled_jf": s.shuffled_jf, "best_val_jf": s.best_val_jf,
                       "epochs": s.epochs, "train_seconds": s.train_seconds, "val_curve": s.val_curve} for s in entry.seeds],
        }
        for name, entry in found.items()
    }


def write_curves(found: dict[str, ConfigRuns], path: Path) -> None:
    """Validation J&F per epoch of every config (mean over seeds, band = min..max): one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    for axis, (title, rows) in zip(axes, (("Table 3: components", TABLE3), ("Table 4: AVAM positions", TABLE4), ("methods", METHODS))):
        for label, name in rows:
            entry = found.get(name)
            curves = [s.val_curve for s in entry.seeds if s.val_curve] if entry else []
            if not curves:
                continue
            length = min(len(c) for c in curves)
            epochs = list(range(1, length + 1))
            columns = [[c[i] for c in curves] for i in range(length)]
            axis.plot(epochs, [statistics.fmean(c) for c in columns], marker="o", label=label)
            axis.fill_between(epochs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.15)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("validation J&F")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddavs_rt.train.study", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/budget"), help="folder of RUNS/<config>/seed<k>/")
    parser.add_argument("--out", type=Path, default=Path("docs/results"), help="where study.json and study-tables.md go")
    parser.add_argument("--from-json", type=Path, help="render from this saved study.json instead of --runs")
    parser.add_argument("--bench", type=Path, help="folder of <config>.json bench reports (batch-1 fps)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.from_json is not None:
        try:
            found = from_json(json.loads(args.from_json.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            print(f"error: {args.from_json} is not a study.json written by this module ({error}); pass --runs instead", file=sys.stderr)
            return 2
        runs: Path | str = f"{args.runs} (re-rendered from {args.from_json})"
    else:
        if not args.runs.is_dir():
            print(f"error: {args.runs} is not a folder; run scripts/run_study.sh first", file=sys.stderr)
            return 2
        found = collect(args.runs)
        runs = args.runs
    if not found:
        print(f"error: no evaluated runs under {args.runs}; run scripts/run_study.sh first", file=sys.stderr)
        return 2
    if args.bench is not None:
        if not args.bench.is_dir():
            print(f"error: --bench {args.bench} is not a folder of <config>.json bench reports", file=sys.stderr)
            return 2
        add_bench(found, args.bench)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "study.json", json.dumps(to_json(found), indent=1) + "\n")
    atomic_write_text(args.out / "study-tables.md", render(found, runs))
    write_curves(found, args.out / "study-curves.png")
    print(f"{sum(len(e.seeds) for e in found.values())} runs of {len(found)} configs -> {args.out}/study-tables.md, study.json, study-curves.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

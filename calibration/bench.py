"""`ddavs-rt bench` (offline tool, installed as ddavs_rt.calibration.bench): model latency and throughput per backend and batch size, in one run.

    ddavs-rt bench --config configs/model/ddavs-tiny.yaml --backend torch,onnxruntime,onnxruntime-int8 \
        --batch 1,8 --warmup 3 --iters 20 --save
    ddavs-rt bench --checkpoint models/ddavs-tiny-synth --backend onnxruntime,openvino,openvino-bf16,openvino-int8 \
        --batch 1,8 --rounds 3 --data runs/synth-calib --save --note "machine shared with other jobs"

`--save` writes `bench/results/engines-<machine>-<date>/`: one JSON per backend x precision x batch
and a summary.json, all from the one run, each with the CPU's name and SIMD flags. A backend this
machine cannot run natively (openvino-bf16 without AMX / AVX-512 BF16) is listed under `skipped`.
`--rounds N` runs the whole backend sequence N times and keeps each row's best round, so a burst
of other load on a shared machine does not decide a ratio.

Per backend and batch: median and p95 latency of `engine.infer`, throughput (frames/s at the
median), and the peak RSS of the process that ran it. Each backend runs in its own fresh
process (multiprocessing, spawn), so its peak RSS is its own and one backend's allocator state
cannot slow the next. Without --checkpoint, a random-weights checkpoint is built from --config
(speed does not depend on the weights). The ONNX export (dynamic batch up to the largest batch
asked for) and, for `onnxruntime-int8`, a calibration (min-max by default, on --data or on a
few freshly generated SynthAVS clips) are prepared first. The JSON describes the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ddavs_rt.atomic import atomic_write_text
from ddavs_rt.engine import describe_machine, machine_slug, physical_cores
from ddavs_rt.errors import ConfigError

log = logging.getLogger(__name__)

BENCH_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8", "tensorrt-fp16")
# bench name -> (open_engine backend spec, the file it runs)
ENGINE_OF = {
    "torch": ("torch", "torch"), "onnxruntime": ("onnxruntime:fp32", "onnxruntime"),
    "onnxruntime-int8": ("onnxruntime:int8", "onnxruntime-int8"), "openvino": ("openvino:fp32", "onnxruntime"),
    "openvino-bf16": ("openvino:bf16", "onnxruntime"), "openvino-int8": ("openvino:int8", "openvino-int8"),
    "tensorrt-fp16": ("tensorrt", "tensorrt-fp16"),
}
RESULTS_DIR = Path("bench/results")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(latencies_s: list[float], batch: int) -> dict[str, float]:
    median = statistics.median(latencies_s)
    return {
        "median_ms": round(median * 1e3, 3),
        "p95_ms": round(percentile(latencies_s, 95) * 1e3, 3),
        "mean_ms": round(statistics.fmean(latencies_s) * 1e3, 3),
        "min_ms": round(min(latencies_s) * 1e3, 3),
        "frames_per_s": round(batch / median, 2),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process, MiB.

    Linux: VmHWM from /proc/self/status. Not getrusage's ru_maxrss there: the kernel carries it
    across fork + exec, so a freshly spawned worker would report its parent's peak.
    Elsewhere: getrusage (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """Child process: open one engine, time it at each batch size."""
    import torch

    from ddavs_rt.engine import open_engine

    threads = job["threads"]
    torch.set_num_threads(threads)
    options = {"threads": threads, "compile": False, "hint": job.get("hint", "LATENCY")}  # open_engine passes each backend its own
    engine = open_engine(job["path"], backend=job["engine_backend"], device=job["device"], export=False, **options)
    spec = engine.spec
    h, w = spec.input_size
    rng = np.random.default_rng(0)
    rows = []
    for batch in job["batches"]:
        frames = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        audio = rng.uniform(-0.5, 0.5, (batch, spec.window_samples)).astype(np.float32)
        for _ in range(job["warmup"]):
            engine.infer(frames, audio)
        latencies = []
        for _ in range(job["iters"]):
            start = time.perf_counter()
            engine.infer(frames, audio)
            latencies.append(time.perf_counter() - start)
        rows.append({"backend": job["backend"], "engine": spec.backend, "precision": spec.precision, "batch": batch,
                     **summarize(latencies, batch),
                     "iters": job["iters"], "warmup": job["warmup"]})
    peak = peak_rss_mib()
    for row in rows:
        row["peak_rss_mib"] = peak
    return {"rows": rows, "spec": {"model_id": spec.model_id, "precision": spec.precision, "device": spec.device,
                                   "input_size": list(spec.input_size), "batch_max": spec.batch_max}}


def prepare(args: argparse.Namespace, work: Path, backends: list[str], batches: list[int]) -> dict[str, Path]:
    """Checkpoint, ONNX and int8 ONNX as needed; returns backend -> path for open_engine."""
    from ddavs_rt.engine.export import export_checkpoint
    from ddavs_rt.engine.random_weights import write_random_checkpoint

    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
    else:
        checkpoint = write_random_checkpoint(args.config, work / "checkpoint")
        log.info("random-weights checkpoint from %s in %s", args.config, checkpoint)
    paths: dict[str, Path] = {"torch": checkpoint}
    if any(b != "torch" for b in backends):
        onnx_path = work / "model.onnx"
        if not _reusable(onnx_path, checkpoint, max(batches)):
            onnx_path = export_checkpoint(checkpoint, onnx_path, batch=(1, max(batches)))
        paths["onnxruntime"] = onnx_path
        if "openvino-int8" in backends:
            from ddavs_rt.calibration.openvino_int8 import quantize_openvino

            ir = work / "model.int8.xml"
            paths["openvino-int8"] = ir if _reusable(ir, checkpoint, max(batches)) else quantize_openvino(
                onnx_path, _calibration_data(args, work), ir, clips=args.calib_clips)
        if "onnxruntime-int8" in backends:
            from ddavs_rt.calibration.quantize import calibrate_onnx  # offline tool, lazily

            qdq = work / "model.int8.onnx"
            paths["onnxruntime-int8"] = qdq if _reusable(qdq, checkpoint, max(batches)) else calibrate_onnx(
                onnx_path, _calibration_data(args, work), qdq, clips=args.calib_clips, method=args.calib_method)
        if "tensorrt-fp16" in backends:
            from ddavs_rt.calibration.tensorrt_build import build_engine

            paths["tensorrt-fp16"] = build_engine(onnx_path, "fp16", work / "model.fp16.engine")
    return paths


def _reusable(path: Path, checkpoint: Path, batch_max: int) -> bool:
    """A file left in --work by an earlier run, made from this model_id and wide enough in batch."""
    from ddavs_rt.engine import checkpoint_identity, read_onnx_sidecar, sidecar_path

    if not (path.is_file() and sidecar_path(path).is_file()):
        return False
    try:
        sidecar = read_onnx_sidecar(path)
    except Exception:  # noqa: BLE001 - not reusable: made again
        return False
    reuse = sidecar.model_id == checkpoint_identity(checkpoint).model_id and sidecar.batch_max >= batch_max
    if reuse:
        log.info("reusing %s from --work (same model_id %s)", path, sidecar.model_id)
    return reuse


def _calibration_data(args: argparse.Namespace, work: Path) -> Path:
    if args.data:
        return Path(args.data)
    data = work / "calibration-clips"
    if not data.is_dir():
        from ddavs_rt.synth.writer import write_dataset

        write_dataset(data, clips=2, seed=2024)
    return data


def skip_reason(backend: str) -> str | None:
    """Why a bench backend cannot run on this machine (measured nowhere rather than emulated)."""
    import importlib.util

    if backend.startswith("openvino") and importlib.util.find_spec("openvino") is None:
        return "openvino is not installed"
    if backend == "openvino-bf16":
        from ddavs_rt.engine.openvino_backend import native_bf16

        if not native_bf16():
            return "the CPU has neither AMX nor AVX-512 BF16 (bf16 would be emulated)"
    return None


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BENCH_BACKENDS]
    if unknown:
        raise ConfigError(f"--backend {','.join(unknown)}: choose among {', '.join(BENCH_BACKENDS)}")
    try:
        batches = sorted({int(b) for b in args.batch.split(",") if b.strip()})
    except ValueError:
        raise ConfigError(f"--batch {args.batch!r}: expected sizes like 1,8,32") from None
    if not batches or batches[0] < 1:
        raise ConfigError(f"--batch {args.batch!r}: sizes must be >= 1")
    if not args.checkpoint and not args.config:
        raise ConfigError("pass --checkpoint DIR or --config FILE (a random-weights checkpoint is built from it)")
    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="ddavs-bench.") as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        skipped = {b: reason for b in backends if (reason := skip_reason(b))}
        backends = [b for b in backends if b not in skipped]
        paths = prepare(args, work, backends, batches)
        context = multiprocessing.get_context("spawn")
        rows, specs = [], {}
        for round_index in range(args.rounds):  # rounds interleave the backends: a load change hits them all
            for backend in backends:
                spec, file_key = ENGINE_OF[backend]
                job = {"backend": backend, "engine_backend": spec, "path": str(paths[file_key]),
                       "device": args.device, "batches": batches, "warmup": args.warmup, "iters": args.iters,
                       "threads": threads, "hint": args.hint}
                log.info("round %d: benchmarking %s at batch %s", round_index + 1, backend, batches)
                with context.Pool(1) as pool:
                    result = pool.apply(_measure, (job,))
                rows += [dict(row, round=round_index + 1) for row in result["rows"]]
                specs[backend] = result["spec"]
        rows = _best_of_rounds(rows)
    report = {
        "kind": "ddavs-rt model benchmark",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"checkpoint": str(args.checkpoint) if args.checkpoint else None,
                  "config": str(args.config) if args.config else None,
                  "weights": "checkpoint" if args.checkpoint else "random (speed does not depend on weights)"},
        "machine": describe_machine(args.device),
        "settings": {"threads": threads, "warmup": args.warmup, "iters": args.iters, "device": args.device,
                     "calibration": {"method": args.calib_method, "clips": args.calib_clips}},
        "engines": specs,
        "skipped": skipped,
        "results": rows,
        "ratios_to_torch": _ratios(rows),
        "ratios_to_onnxruntime_fp32": _ratios(rows, "onnxruntime"),
        "note": args.note,
    }
    return report


def _best_of_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (backend, batch): the round with the highest throughput (least disturbed by other load)."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["backend"], row["batch"])
        if key not in best or row["frames_per_s"] > best[key]["frames_per_s"]:
            best[key] = dict(row, rounds_fps=[r["frames_per_s"] for r in rows if (r["backend"], r["batch"]) == key])
    return list(best.values())


def _ratios(rows: list[dict[str, Any]], base: str = "torch") -> dict[str, dict[str, float]]:
    """Throughput of each backend over `base`'s (torch eager by default), per batch size."""
    torch_fps = {r["batch"]: r["frames_per_s"] for r in rows if r["backend"] == base}
    ratios: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["backend"] != base and row["batch"] in torch_fps:
            ratios.setdefault(row["backend"], {})[str(row["batch"])] = round(row["frames_per_s"] / torch_fps[row["batch"]], 2)
    return ratios


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'backend':<18}{'batch':>6}{'median ms':>12}{'p95 ms':>10}{'frames/s':>11}{'peak RSS MiB':>14}"]
    for r in rows:
        lines.append(f"{r['backend']:<18}{r['batch']:>6}{r['median_ms']:>12.2f}{r['p95_ms']:>10.2f}"
                     f"{r['frames_per_s']:>11.1f}{r['peak_rss_mib']:>14.0f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="torch,onnxruntime,onnxruntime-int8", help=f"comma list of {', '.join(BENCH_BACKENDS)}")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder to benchmark")
    source.add_argument("--config", type=Path, default=None, help="model config: benchmark random weights of it")
    parser.add_argument("--batch", default="1,8,32", help="comma list of batch sizes (default 1,8,32)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: physical cores)")
    parser.add_argument("--device", default=None, help="cpu or cuda:0 (default: the backend's own choice)")
    parser.add_argument("--data", type=Path, default=None, help="calibration clips for onnxruntime-int8")
    parser.add_argument("--calib-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    parser.add_argument("--calib-clips", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the backend sequence; each row keeps its best round")
    parser.add_argument("--hint", default="LATENCY", choices=["LATENCY", "THROUGHPUT"], help="OpenVINO performance hint")
    parser.add_argument("--work", type=Path, default=None, help="keep the exported files here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument("--save", action="store_true", help=f"write the report to {RESULTS_DIR}/<machine>-<date>.json")
    parser.add_argument("--note", default=None, help="free text stored in the report (e.g. 'machine shared with other jobs')")


def run(args: argparse.Namespace) -> int:
    report = run_bench(args)
    print(format_table(report["results"]))
    for backend, ratios in report["ratios_to_torch"].items():
        print(f"{backend} / torch eager throughput: " + ", ".join(f"batch {b}: {r:.2f}x" for b, r in ratios.items()))
    targets = [args.json] if args.json else []
    if args.save:
        folder = RESULTS_DIR / f"engines-{machine_slug(args.device)}-{dt.date.today().isoformat()}"
        targets.append(folder / "summary.json")
        for row in report["results"]:  # one JSON per backend x precision x batch, all from this one run
            single = {key: report[key] for key in ("kind", "date", "model", "machine", "settings", "note")}
            single["result"] = row
            single["engine"] = report["engines"].get(row["backend"])
            name = f"{row['engine']}-{row['precision']}-b{row['batch']}.json"
            atomic_write_text(folder / name, json.dumps(single, indent=2) + "\n")
    for target in targets:
        atomic_write_text(target, json.dumps(report, indent=2) + "\n")
        print(f"wrote {target}")
    return 0

"""`ddavs-rt bench-pipeline`: the whole streaming pipeline, measured.

Two passes over the same synthetic live streams (real-time, 25 fps by default):
1. with the real engine: sustained frames/s per stream, dropped-frame share, capture-to-sent
   latency percentiles over every frame of the pass (the streams' whole-run HDR histograms,
   merged), resident memory sampled every second (growth after a warm-up);
2. with a zero-cost engine of the same spec (logits of zeros, no model): the CPU time per
   frame of everything else -- capture, audio windows, post-processing, overlay, encoding and
   publishing -- i.e. the pipeline's own overhead.
Results are printed and written as JSON with the machine described.

`--streams max` instead finds the most streams the box sustains: passes of `--seconds` each
(30 s unless given) with N streams, N chosen by `ddavs_rt.runtime.capacity` (grow by doubling,
bisect, confirm the answer with a second pass); a pass passes with no dropped frame and p95
capture-to-sent within `--max-p95-ms` (100 ms). Every pass is recorded, with the load average
before and after it (the machine may be shared), in one JSON (by default under bench/results/).
There is no zero-cost pass in this mode.

Before each pass the engine runs once at batch 1 and at the pass's largest batch, so the first
frames do not pay for the engine's first run at a new input shape, and the first
`--warmup-seconds` (5) of each pass are left out of its figures (frames, drops, latencies, CPU,
batches): a stream's first frames wait for its first audio.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
from ddavs_rt.errors import ConfigError
from ddavs_rt.runtime.capacity import CapacitySearch, pass_ok
from ddavs_rt.runtime.health import histogram_percentiles_ms, new_latency_histogram

log = logging.getLogger(__name__)


class ZeroCostEngine:
    """The engine's spec without the model: the same logits for every frame, a disc of "sounding"
    (class 1) over a quarter of the picture and background elsewhere, so that post-processing,
    the overlay and the mask PNG cost what they cost for a real mask (an empty mask skips the
    overlay's blending and contours)."""

    def __init__(self, spec) -> None:
        self.spec = spec
        h, w = spec.input_size
        ys, xs = np.mgrid[0:h, 0:w]
        inside = (ys - h / 2) ** 2 + (xs - w / 2) ** 2 <= 0.25 * h * w / np.pi  # area h * w / 4
        logits = np.full((spec.num_classes, h, w), -5.0, np.float32)
        if spec.num_classes == 1:
            logits[0][inside] = 5.0
        else:
            logits[0][~inside] = 5.0
            logits[1][inside] = 5.0
        self._logits = logits

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return np.repeat(self._logits[None], frames.shape[0], axis=0)

    def prepare(self, max_batch: int) -> None:
        """Nothing to compile."""

    def close(self) -> None:
        pass


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _thread_cpu_seconds(native_id: int | None) -> float:
    """CPU time of one thread of this process (Linux /proc), 0.0 where it cannot be read."""
    if native_id is None:
        return 0.0
    try:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def warm_up(engine, batches: tuple[int, ...]) -> None:
    """Run the engine once at each batch size (its first run at a new input shape is slow)."""
    h, w = engine.spec.input_size
    for batch in sorted(set(batches)):
        engine.infer(np.zeros((batch, h, w, 3), np.uint8), np.zeros((batch, engine.spec.window_samples), np.float32))


class _KeepOpen:
    """The engine for one pass: the runtime closes its engine on close(); the benchmark reuses it."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.spec = engine.spec
        self.concurrency = getattr(engine, "concurrency", 1)

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        return self._engine.infer(frames, audio)

    def prepare(self, max_batch: int) -> None:
        self._engine.prepare(max_batch)

    def close(self) -> None:
        pass


def _histogram_since(end, start):
    """The values recorded in `end` that were not yet in `start` (a copy taken earlier)."""
    since = new_latency_histogram()
    for item in end.get_recorded_iterator():
        count = item.count_at_value_iterated_to - start.get_count_at_value(item.value_iterated_to)
        if count > 0:
            since.record_value(item.value_iterated_to, count)
    return since


def run_pass(engine, streams: int, seconds: float, fps: float, publish: str, overlay: bool,
             max_batch: int | None = None, warmup_s: float = 0.0, inference_workers: int | None = None,
             batch_deadline_ms: float | None = None) -> dict:
    """One pass of `seconds` measured after `warmup_s` (frames, drops, latencies, CPU and batches
    of the warm-up are left out: the streams' first audio, the first sends)."""
    from ddavs_rt.runtime.runner import Runtime

    max_batch = max_batch or max(1, streams)
    config = RuntimeConfig(
        sources=[SyntheticSourceConfig(id=f"s{i}", seed=100 + i, fps=fps) for i in range(streams)],
        publish=publish, overlay=overlay, max_batch=max_batch, stats_interval_s=1.0,
        inference_workers=inference_workers,
        **({} if batch_deadline_ms is None else {"batch_deadline_ms": batch_deadline_ms}),
    )
    warm_up(engine, (1, min(max_batch, streams)))
    runtime = Runtime(config, _KeepOpen(engine))
    batch_infer: list[tuple[float, int, float]] = []  # (monotonic time, size, infer ms)

    def on_batch(size: int, infer_ms: float) -> None:
        batch_infer.append((time.monotonic(), size, infer_ms))

    runtime.scheduler.on_batch.append(on_batch)
    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    source_threads: list[int | None] = []
    t_start = time.monotonic()
    mark: dict = {}

    def source_cpu() -> float:
        return sum(_thread_cpu_seconds(tid) for tid in source_threads)

    def take_mark() -> None:
        mark.update(t=time.monotonic(), cpu=_cpu_seconds(), source_cpu=source_cpu(),
                    dropped={h.stream_id: h.frames_dropped for h in runtime.health()},
                    histograms={s.stream_id: s.counters.run_histogram() for s in runtime.streams})

    def sample(_snapshots) -> None:
        now = time.monotonic()
        memory.append((now - t_start, _rss_mib()))
        if not mark and now - t_start >= warmup_s:
            take_mark()

    timer = threading.Timer(seconds + warmup_s, stop.set)
    try:
        runtime.start()  # opening sources (building the scene) is start-up, not per-frame cost
        source_threads = [getattr(source._thread, "native_id", None) for stream in runtime.streams
                          for source in stream.sources]
        t_start = time.monotonic()
        if warmup_s <= 0:
            take_mark()
        timer.start()
        runtime.run(stop, on_stats=sample)
        if not mark:  # the pass ended before the warm-up did: nothing is left out
            raise RuntimeError(f"the pass ended within its {warmup_s:g} s warm-up")
        elapsed = time.monotonic() - mark["t"]
        cpu = _cpu_seconds() - mark["cpu"]
        render_cpu = source_cpu() - mark["source_cpu"]
        health = runtime.health()
        dropped = sum(h.frames_dropped - mark["dropped"][h.stream_id] for h in health)
        latency = new_latency_histogram()  # every measured frame of every stream: merged, not a kept list
        for stream in runtime.streams:
            latency.add(_histogram_since(stream.counters.run_histogram(), mark["histograms"][stream.stream_id]))
        processed = latency.get_total_count()  # a frame is counted once sent, with its latency
    finally:
        timer.cancel()
        runtime.close()
    batch_infer_by_size: dict[int, list[float]] = {}
    for t, size, infer_ms in batch_infer:
        if t >= mark["t"]:
            batch_infer_by_size.setdefault(size, []).append(infer_ms)
    offered = processed + dropped
    warm = [m for t, m in memory if t >= min(10.0, seconds / 3)]
    batch_infer = batch_infer_by_size
    batches = sum(len(v) for v in batch_infer.values())
    return {
        "seconds": elapsed,
        "warmup_seconds_left_out": warmup_s,
        "max_batch": max_batch,
        "batch_deadline_ms": config.batch_deadline_ms,
        "inference_loops": runtime.scheduler.workers,
        "batches": {
            "count": batches,
            "mean_size": sum(k * len(v) for k, v in batch_infer.items()) / batches if batches else None,
            "by_size": {str(k): {"count": len(v), "infer_ms_median": float(np.median(v)),
                                 "infer_ms_per_frame_median": float(np.median(v)) / k}
                        for k, v in sorted(batch_infer.items())},
            "what": "engine calls of the pass by batch size; infer ms is the engine call's wall time",
        },
        "streams": streams,
        "processed": processed,
        "dropped": dropped,
        "dropped_share": dropped / offered if offered else 0.0,
        "fps_per_stream": processed / elapsed / streams,
        "latency_ms": {
            **{f"p{q}": v for q, v in zip((50, 95, 99), histogram_percentiles_ms(latency, (50, 95, 99)))},
            "max": latency.get_max_value() / 1000.0 if latency.get_total_count() else None,
            "frames": latency.get_total_count(),
            "what": "capture to sent (after the send returned), every frame of the pass after its warm-up, all streams",
        },
        "cpu_ms_per_frame": 1000.0 * cpu / processed if processed else None,
        "source_cpu_ms_per_frame": 1000.0 * render_cpu / processed if processed else None,
        "rss_mib": {
            "samples": [[round(t, 1), round(m, 1)] for t, m in memory],
            "after_warmup_first": warm[0] if warm else None,
            "last": warm[-1] if warm else None,
            "growth_share": (warm[-1] - warm[0]) / warm[0] if len(warm) >= 2 else None,
        },
    }


def _streams(text: str) -> int | str:
    if text == "max":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--streams takes a count of at least 1 or 'max', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "--engine", dest="engine", help="model (default: the shipped model)")
    parser.add_argument("--backend", default="onnxruntime", metavar="BACKEND[:PRECISION]",
                        help="auto, torch, onnxruntime, openvino or tensorrt, optionally :fp32/bf16/int8 (default onnxruntime)")
    parser.add_argument("--streams", type=_streams, default=1, metavar="N|max",
                        help="synthetic live streams; 'max' finds the most this box sustains with no dropped "
                             "frame and p95 capture-to-sent within --max-p95-ms (passes of --seconds each: "
                             "N doubles until a pass fails, then bisects; the answer must pass twice)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="length of the measured pass (default 60; 30 per pass with --streams max)")
    parser.add_argument("--overhead-seconds", type=float, default=20.0, help="length of the zero-cost pass")
    parser.add_argument("--warmup-seconds", type=float, default=5.0,
                        help="seconds at the start of each pass left out of its figures (5): the streams' "
                             "first audio and first sends")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of each stream")
    parser.add_argument("--no-overlay", action="store_true", help="do not render and encode overlays")
    parser.add_argument("--publish", default="tcp://127.0.0.1:*", help="ZeroMQ endpoint (default: a free port)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU engine threads (default: physical cores)")
    parser.add_argument("--spinning", action="store_true",
                        help="let ONNX Runtime's intra-op threads spin between operators (off by default)")
    parser.add_argument("--hint", choices=("LATENCY", "THROUGHPUT"), default="LATENCY",
                        help="OpenVINO performance hint (LATENCY, as the runtime's default)")
    parser.add_argument("--inference-workers", type=int, default=None, metavar="N",
                        help="the scheduler's inference loops (default: as many calls as the engine runs at once)")
    parser.add_argument("--batch-deadline-ms", type=float, default=None, metavar="MS",
                        help="how long a batch waits for the other streams' frames (default: the runtime's)")
    parser.add_argument("--max-batch", type=int, default=None, metavar="N",
                        help="largest batch the scheduler forms (default: the number of streams)")
    capacity = parser.add_argument_group("--streams max")
    capacity.add_argument("--max-p95-ms", type=float, default=100.0, help="p95 capture-to-sent bound of a pass (100)")
    capacity.add_argument("--max-dropped", type=float, default=0.0, metavar="SHARE",
                          help="dropped-frame share a pass may have (0: none)")
    capacity.add_argument("--start-streams", type=int, default=1, metavar="N", help="first pass's stream count (1)")
    capacity.add_argument("--max-streams", type=int, default=32, metavar="N", help="the search's cap (32)")
    capacity.add_argument("--note", default="", help="free text kept in the JSON (e.g. what else ran on the machine)")
    parser.add_argument("--json", dest="json_out",
                        help="write the results here (--streams max: default bench/results/pipeline-capacity-...json)")


def _open(args: argparse.Namespace):
    from ddavs_rt.engine import open_engine
    from ddavs_rt.runtime.cli import SHIPPED_MODEL

    path = Path(args.engine) if args.engine else SHIPPED_MODEL
    return open_engine(path, backend=args.backend, threads=args.threads, spinning=args.spinning or None, hint=args.hint)


def _engine_settings(engine, args: argparse.Namespace) -> dict:
    spec = engine.spec
    return {"backend": spec.backend, "precision": spec.precision, "model_id": spec.model_id,
            "threads": args.threads or "physical cores",
            "openvino_hint": getattr(engine, "hint", None), "concurrency": getattr(engine, "concurrency", 1),
            "inference_workers_asked": args.inference_workers,  # each pass records the loops it ran: inference_loops
            "spinning": bool(getattr(engine, "spinning", False)) if spec.backend == "onnxruntime" else None}


def _write(path: str | Path, result: dict) -> None:
    from ddavs_rt.atomic import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2))


def run(args: argparse.Namespace) -> int:
    if args.max_batch is not None and args.max_batch < 1:
        raise ConfigError(f"--max-batch must be at least 1, got {args.max_batch}")
    if args.streams == "max":
        return run_capacity(args)
    from ddavs_rt.engine.machine import describe_machine

    seconds = 60.0 if args.seconds is None else args.seconds
    engine = _open(args)
    spec = engine.spec
    overlay = not args.no_overlay
    print(f"pipeline with {spec.model_id} on {spec.backend}: {args.streams} stream(s) x {args.fps:g} fps "
          f"for {seconds:g} s", flush=True)
    try:
        full = run_pass(engine, args.streams, seconds, args.fps, args.publish, overlay, args.max_batch,
                        args.warmup_seconds, args.inference_workers, args.batch_deadline_ms)
        print("overhead pass (zero-cost engine) ...", flush=True)
        overhead = run_pass(ZeroCostEngine(spec), args.streams, args.overhead_seconds, args.fps, args.publish,
                            overlay, args.max_batch, args.warmup_seconds)
    finally:
        engine.close()
    result = {
        "benchmark": "ddavs-rt bench-pipeline",
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": describe_machine(),
        "load_average_after": list(os.getloadavg()),
        "model_id": spec.model_id,
        "backend": spec.backend,
        "precision": spec.precision,
        "engine": _engine_settings(engine, args),
        "overlay": overlay,
        "with_engine": full,
        "pipeline_overhead": {
            "cpu_ms_per_frame": overhead["cpu_ms_per_frame"] - overhead["source_cpu_ms_per_frame"],
            "with_source_cpu_ms_per_frame": overhead["cpu_ms_per_frame"],
            "source_cpu_ms_per_frame": overhead["source_cpu_ms_per_frame"],
            "note": "process CPU time per frame with a zero-cost engine, less the source threads' own "
                    "CPU (rendering the synthetic scene stands in for a camera's capture): audio "
                    "windows, scheduling, post-processing, live accuracy, overlay, encoding, publishing",
        },
    }
    lat = full["latency_ms"]
    rss = full["rss_mib"]
    print(f"sustained {full['fps_per_stream']:.1f} fps/stream, dropped {100 * full['dropped_share']:.2f} %, "
          f"latency p50 {lat['p50']:.1f} p95 {lat['p95']:.1f} p99 {lat['p99']:.1f} ms, "
          f"mean batch {full['batches']['mean_size'] or 0:.2f}, "
          f"pipeline overhead {result['pipeline_overhead']['cpu_ms_per_frame']:.2f} ms CPU/frame "
          f"(+{overhead['source_cpu_ms_per_frame']:.2f} ms rendering the scene), "
          f"RSS {rss['after_warmup_first']} -> {rss['last']} MiB", flush=True)
    if args.json_out:
        _write(args.json_out, result)
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _summary(p: dict) -> dict:
    lat = p["latency_ms"]
    return {"streams": p["streams"], "passed": p["passed"], "dropped_share": p["dropped_share"],
            "p95_ms": lat["p95"], "fps_per_stream": p["fps_per_stream"],
            "mean_batch": p["batches"]["mean_size"], "cpu_ms_per_frame": p["cpu_ms_per_frame"]}


def run_capacity(args: argparse.Namespace) -> int:
    """`--streams max`: passes chosen by CapacitySearch, every one recorded, one JSON."""
    from tqdm import tqdm

    from ddavs_rt.engine.machine import describe_machine

    if not 1 <= args.start_streams <= args.max_streams:
        raise ConfigError(f"--start-streams {args.start_streams} and --max-streams {args.max_streams}: "
                          "need 1 <= start <= max")
    seconds = 30.0 if args.seconds is None else args.seconds
    overlay = not args.no_overlay
    engine = _open(args)
    spec = engine.spec
    machine = describe_machine()
    started = datetime.now(timezone.utc)
    out = Path(args.json_out) if args.json_out else Path("bench/results") / (
        f"pipeline-capacity-{_slug(machine.get('cpu_model') or 'cpu')}-{spec.backend}-{spec.precision}-"
        f"{'overlay' if overlay else 'no-overlay'}-{started:%Y-%m-%d}.json")
    search = CapacitySearch(start=args.start_streams, limit=args.max_streams)
    passes: list[dict] = []
    result: dict = {
        "benchmark": "ddavs-rt bench-pipeline --streams max",
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": started.isoformat(timespec="seconds"),
        "machine": machine,
        "note": args.note,
        "model_id": spec.model_id,
        "engine": _engine_settings(engine, args),
        "overlay": overlay,
        "fps_per_stream_offered": args.fps,
        "rule": {"max_dropped_share": args.max_dropped, "max_p95_ms": args.max_p95_ms, "pass_seconds": seconds,
                 "warmup_seconds_left_out": args.warmup_seconds,
                 "search": "doubling from start_streams, then bisection; the answer passed twice "
                           "(ddavs_rt/runtime/capacity.py)",
                 "start_streams": args.start_streams, "max_streams": args.max_streams},
        "passes": passes,
    }
    print(f"capacity of {spec.model_id} on {spec.backend}/{spec.precision}, overlays {'on' if overlay else 'off'}: "
          f"passes of {seconds:g} s at {args.fps:g} fps per stream, bar: dropped <= {100 * args.max_dropped:g} %, "
          f"p95 <= {args.max_p95_ms:g} ms", flush=True)
    try:
        with tqdm(desc="passes", unit="pass", file=sys.stderr) as bar:
            while (streams := search.next_streams()) is not None:
                load_before = list(os.getloadavg())
                p = run_pass(engine, streams, seconds, args.fps, args.publish, overlay, args.max_batch,
                             args.warmup_seconds, args.inference_workers, args.batch_deadline_ms)
                p95 = p["latency_ms"]["p95"]
                p["passed"] = pass_ok(p["dropped_share"], p95, max_dropped_share=args.max_dropped,
                                      max_p95_ms=args.max_p95_ms)
                p["load_average_before"] = load_before
                p["load_average_after"] = list(os.getloadavg())
                del p["rss_mib"]["samples"]
                search.record(streams, p["passed"])
                passes.append(p)
                bar.update(1)
                print(f"  {streams:3d} stream(s): {'pass' if p['passed'] else 'FAIL'}  dropped "
                      f"{100 * p['dropped_share']:.2f} %, p95 {p95 if p95 is not None and not math.isnan(p95) else float('nan'):.1f} ms, "
                      f"{p['fps_per_stream']:.1f} fps/stream, mean batch {p['batches']['mean_size'] or 0:.2f}, "
                      f"load {load_before[0]:.1f} -> {p['load_average_after'][0]:.1f}", flush=True)
                result["max_streams_sustained"] = search.result if search.done else None
                _write(out, result)  # every pass is on disk as soon as it ends
    finally:
        engine.close()
    result["max_streams_sustained"] = search.result
    result["capped"] = search.capped
    result["summary"] = [_summary(p) for p in passes]
    _write(out, result)
    more = " (the cap: it may sustain more)" if search.capped else ""
    print(f"sustained: {search.result} stream(s) x {args.fps:g} fps{more}; {len(passes)} passes in {out}", flush=True)
    return 0

"""`ddavs-rt bench-pipeline`: the whole streaming pipeline, measured.

Two passes over the same synthetic live streams (real-time, 25 fps by default):
1. with the real engine: sustained frames/s per stream, dropped-frame share, capture-to-sent
   latency percentiles over every frame of the pass (the streams' whole-run HDR histograms,
   merged), resident memory sampled every second (growth after a warm-up);
2. with a zero-cost engine of the same spec (logits of zeros, no model): the CPU time per
   frame of everything else -- capture, audio windows, post-processing, overlay, encoding and
   publishing -- i.e. the pipeline's own overhead.
Results are printed and written as JSON with the machine described.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
from ddavs_rt.runtime.health import histogram_percentiles_ms, new_latency_histogram

log = logging.getLogger(__name__)


class ZeroCostEngine:
    """The engine's spec without the model: logits of zeros (background everywhere)."""

    def __init__(self, spec) -> None:
        self.spec = spec

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        h, w = self.spec.input_size
        return np.full((frames.shape[0], self.spec.num_classes, h, w), -5.0, np.float32)

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


def run_pass(engine, streams: int, seconds: float, fps: float, publish: str, overlay: bool) -> dict:
    from ddavs_rt.runtime.runner import Runtime

    config = RuntimeConfig(
        sources=[SyntheticSourceConfig(id=f"s{i}", seed=100 + i, fps=fps) for i in range(streams)],
        publish=publish, overlay=overlay, max_batch=max(1, streams), stats_interval_s=1.0,
    )
    runtime = Runtime(config, engine)
    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    source_threads: list[int | None] = []
    t0 = time.monotonic()

    def sample(_snapshots) -> None:
        memory.append((time.monotonic() - t0, _rss_mib()))

    timer = threading.Timer(seconds, stop.set)
    try:
        runtime.start()  # opening sources (building the scene) is start-up, not per-frame cost
        source_threads = [getattr(source._thread, "native_id", None) for stream in runtime.streams
                          for source in stream.sources]
        source_cpu0 = sum(_thread_cpu_seconds(tid) for tid in source_threads)
        cpu0 = _cpu_seconds()
        t0 = time.monotonic()
        timer.start()
        runtime.run(stop, on_stats=sample)
        elapsed = time.monotonic() - t0
        cpu = _cpu_seconds() - cpu0
        render_cpu = sum(_thread_cpu_seconds(tid) for tid in source_threads) - source_cpu0
        health = runtime.health()
        latency = new_latency_histogram()  # every frame of every stream: merged, not a kept list
        for stream in runtime.streams:
            latency.add(stream.counters.run_histogram())
    finally:
        timer.cancel()
        runtime.close()
    processed = sum(h.processed for h in health)
    dropped = sum(h.frames_dropped for h in health)
    offered = processed + dropped
    warm = [m for t, m in memory if t >= min(10.0, seconds / 3)]
    return {
        "seconds": elapsed,
        "streams": streams,
        "processed": processed,
        "dropped": dropped,
        "dropped_share": dropped / offered if offered else 0.0,
        "fps_per_stream": processed / elapsed / streams,
        "latency_ms": {
            **{f"p{q}": v for q, v in zip((50, 95, 99), histogram_percentiles_ms(latency, (50, 95, 99)))},
            "max": latency.get_max_value() / 1000.0 if latency.get_total_count() else None,
            "frames": latency.get_total_count(),
            "what": "capture to sent (after the send returned), every frame of the pass, all streams",
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", "--engine", dest="engine", help="model (default: the shipped model)")
    parser.add_argument("--backend", default="onnxruntime", metavar="BACKEND[:PRECISION]",
                        help="auto, torch, onnxruntime, openvino or tensorrt, optionally :fp32/bf16/int8 (default onnxruntime)")
    parser.add_argument("--streams", type=int, default=1, help="synthetic live streams")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the measured pass")
    parser.add_argument("--overhead-seconds", type=float, default=20.0, help="length of the zero-cost pass")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of each stream")
    parser.add_argument("--no-overlay", action="store_true", help="do not render and encode overlays")
    parser.add_argument("--publish", default="tcp://127.0.0.1:*", help="ZeroMQ endpoint (default: a free port)")
    parser.add_argument("--json", dest="json_out", help="write the results here")


def run(args: argparse.Namespace) -> int:
    from ddavs_rt.engine import open_engine
    from ddavs_rt.engine.machine import describe_machine
    from ddavs_rt.runtime.cli import SHIPPED_MODEL

    path = Path(args.engine) if args.engine else SHIPPED_MODEL
    engine = open_engine(path, backend=args.backend)
    spec = engine.spec
    overlay = not args.no_overlay
    print(f"pipeline with {spec.model_id} on {spec.backend}: {args.streams} stream(s) x {args.fps:g} fps "
          f"for {args.seconds:g} s", flush=True)
    full = run_pass(engine, args.streams, args.seconds, args.fps, args.publish, overlay)
    print("overhead pass (zero-cost engine) ...", flush=True)
    overhead = run_pass(ZeroCostEngine(spec), args.streams, args.overhead_seconds, args.fps, args.publish, overlay)
    result = {
        "benchmark": "ddavs-rt bench-pipeline",
        "machine": describe_machine(),
        "model_id": spec.model_id,
        "backend": spec.backend,
        "precision": spec.precision,
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
          f"pipeline overhead {result['pipeline_overhead']['cpu_ms_per_frame']:.2f} ms CPU/frame "
          f"(+{overhead['source_cpu_ms_per_frame']:.2f} ms rendering the scene), "
          f"RSS {rss['after_warmup_first']} -> {rss['last']} MiB", flush=True)
    if args.json_out:
        from ddavs_rt.atomic import atomic_write_text

        atomic_write_text(args.json_out, json.dumps(result, indent=2))
    engine.close()
    return 0

"""Benchmark SynthAVS: dataset clips per second per worker count, live-scene step time.

    python -m ddavs_rt.synth.bench --clips 100 --json synth_bench.json

Prints the figures and writes them as JSON (timings belong here, never in tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ddavs_rt.atomic import atomic_write_text
from ddavs_rt.synth.live import LiveScene
from ddavs_rt.synth.writer import write_dataset


def bench_writer(clips: int, size: int, workers: int) -> float:
    """Clips per second of `write_dataset` into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        start = time.perf_counter()
        write_dataset(folder, clips, seed=0, size=size, workers=workers)
        return clips / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_live(steps: int, size: int) -> dict[str, float]:
    scene = LiveScene(0, size=size)
    for _ in range(10):
        scene.step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        scene.step()
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--live-steps", type=int, default=500)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {
        "size": args.size,
        "clips": args.clips,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "clips_per_s": {str(w): round(bench_writer(args.clips, args.size, w), 2) for w in args.workers},
        "live_step": {k: round(v, 3) for k, v in bench_live(args.live_steps, args.size).items()},
    }
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

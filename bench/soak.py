"""Soak: N synthetic live streams through the whole runtime for a long time; does anything grow?

    python bench/soak.py --minutes 30 --streams 4          # writes bench/results/soak-...json

The runtime runs in this process (real engine, real ZeroMQ publisher on 127.0.0.1 with a real
subscriber counting every message and its sequence gaps). Every `--sample-s` seconds it records
resident memory (RSS), the process's thread count (/proc: native threads, ONNX Runtime's and
PortAudio's included), open file descriptors, frames processed/dropped and the whole-run
capture-to-sent percentiles. The JSON holds every sample and, after a warm-up, the least-squares
slope of RSS (MiB/hour), threads and file descriptors (per hour): a leak shows as a slope that a
longer run would keep paying; a flat process has slopes near 0 and a small max - min.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("soak")


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def native_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _commit() -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def slope_per_hour(times_s: list[float], values: list[float]) -> float | None:
    if len(times_s) < 3:
        return None
    return float(np.polyfit(np.asarray(times_s) / 3600.0, np.asarray(values, float), 1)[0])


class Counter:
    """A SUB socket on its own thread: messages and sequence gaps per stream."""

    def __init__(self, endpoint: str) -> None:
        from ddavs_rt.publish.schema import decode_message

        self._decode = decode_message
        self.received: dict[str, int] = {}
        self.gaps: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._stop = threading.Event()
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.rcvhwm = 1000
        self._socket.setsockopt(zmq.SUBSCRIBE, b"ddavs/")
        self._socket.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name="soak-subscriber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            header = self._decode(self._socket.recv_multipart()).header
            sid = header.stream_id
            self.received[sid] = self.received.get(sid, 0) + 1
            last = self._last.get(sid)
            if last is not None and header.seq > last + 1:
                self.gaps[sid] = self.gaps.get(sid, 0) + header.seq - last - 1
            self._last[sid] = header.seq

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._socket.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of each synthetic stream")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=120.0, help="excluded from the slopes")
    parser.add_argument("--checkpoint", default=str(REPO / "models" / "ddavs-tiny-synth"))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--threads", type=int, default=1, help="engine threads (the machine is shared)")
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    parser.add_argument("--out", help="JSON path (default bench/results/soak-<streams>x-<minutes>min-<date>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from ddavs_rt.atomic import atomic_write_text
    from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.engine.machine import describe_machine
    from ddavs_rt.runtime.health import histogram_percentiles_ms, new_latency_histogram
    from ddavs_rt.runtime.runner import Runtime
    import socket

    with socket.socket() as probe:  # a free loopback port for the publisher and our subscriber
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    engine = open_engine(Path(args.checkpoint), backend=args.backend, threads=args.threads)
    config = RuntimeConfig(
        sources=[SyntheticSourceConfig(id=f"soak{i}", seed=300 + i, fps=args.fps) for i in range(args.streams)],
        publish=endpoint, overlay=True, max_batch=args.streams, stats_interval_s=args.sample_s,
    )
    runtime = Runtime(config, engine)
    seconds = args.minutes * 60.0
    samples: list[dict] = []
    stop = threading.Event()
    counter = Counter(endpoint)
    t0 = time.monotonic()
    bar = tqdm(total=int(seconds), unit="s", desc="soak", mininterval=30)

    def sample(snapshots) -> None:
        t = time.monotonic() - t0
        samples.append({
            "t_s": round(t, 1), "rss_mib": round(rss_mib(), 2), "threads": native_threads(), "fds": open_fds(),
            "processed": sum(h.processed for h in snapshots), "dropped": sum(h.frames_dropped for h in snapshots),
            "received": sum(counter.received.values()),
            "rolling_p95_ms": [round(h.latency_rolling_p95_ms, 1) for h in snapshots],
        })
        bar.update(int(t) - bar.n)

    timer = threading.Timer(seconds, stop.set)
    started = dt.datetime.now(dt.timezone.utc)
    commit = _commit()  # the code that was imported, not what the worktree holds at the end
    try:
        runtime.start()
        t0 = time.monotonic()
        timer.start()
        runtime.run(stop, on_stats=sample)
        health = runtime.health()
        merged = new_latency_histogram()
        for stream in runtime.streams:
            merged.add(stream.counters.run_histogram())
    finally:
        timer.cancel()
        runtime.close()
        counter.close()
        bar.close()
    warm = [s for s in samples if s["t_s"] >= args.warmup_s]
    times = [s["t_s"] for s in warm]

    def summary(key: str) -> dict:
        values = [s[key] for s in warm]
        return {
            "slope_per_hour": slope_per_hour(times, values),
            "first": values[0] if values else None, "last": values[-1] if values else None,
            "min": min(values) if values else None, "max": max(values) if values else None,
        }

    p50, p95, p99 = histogram_percentiles_ms(merged)
    result = {
        "benchmark": "bench/soak.py",
        "started_utc": started.isoformat(timespec="seconds"),
        "commit": commit,
        "machine": describe_machine(),
        "machine_shared": "a 2-core VM shared with four other engineers' builds and tests during the run: "
                          "throughput and latency are loaded figures; the growth slopes are what this measures",
        "note": args.note,
        "config": {"streams": args.streams, "fps": args.fps, "minutes": args.minutes, "backend": engine.spec.backend,
                   "model_id": engine.spec.model_id, "engine_threads": args.threads, "overlay": True,
                   "sample_s": args.sample_s, "warmup_excluded_s": args.warmup_s},
        "rss_mib": summary("rss_mib"),
        "threads": summary("threads"),
        "open_fds": summary("fds"),
        "frames": {
            "processed": sum(h.processed for h in health), "dropped": sum(h.frames_dropped for h in health),
            "received_by_subscriber": sum(counter.received.values()),
            "subscriber_seq_gaps": sum(counter.gaps.values()),
            "engine_failed": sum(h.engine_failed_frames for h in health),
            "audio_incomplete_windows": sum(h.audio_incomplete_windows for h in health),
            "audio_warmup_windows": sum(h.audio_warmup_windows for h in health),
            "per_stream_fps": [round(h.processed / max(1.0, seconds), 2) for h in health],
        },
        "latency_capture_to_sent_ms_whole_run": {"p50": p50, "p95": p95, "p99": p99,
                                                   "frames": merged.get_total_count()},
        "samples": samples,
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / (
        f"soak-{args.streams}x-{args.minutes:g}min-{started.date().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(f"soak {args.minutes:g} min x {args.streams} streams: RSS slope {result['rss_mib']['slope_per_hour']} MiB/h, "
          f"threads {result['threads']['min']}..{result['threads']['max']}, fds {result['open_fds']['min']}.."
          f"{result['open_fds']['max']}; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`ddavs-rt bench-cluster`: what spreading streams over Dask workers costs and buys, as JSON.

Cases, all on this machine and on 127.0.0.1:
- `proxy_per_message`: the same messages (a real header and a 160x160 mask PNG) through a
  direct XPUB -> SUB and through XPUB -> proxy (XSUB/XPUB) -> SUB, in one process: one-way
  latency with one message in flight, and the rate of a burst (encoding included), so the
  proxy's cost per message is a difference measured in one run;
- `direct`: the ordinary single-process runtime with S synthetic streams, publishing directly;
- `cluster_<N>w`: `ddavs-rt --dask` (the real CLI, a subprocess) over a `dask scheduler` and N
  `dask worker` processes (with nannies), N shards; after the measured window the worker
  process running shard 0 is killed by its PID and the time until each of its streams publishes
  again (a new epoch) is recorded.
For each: frames/s per stream and in all, p50/p95 of capture-to-publish (the header's
`capture_to_publish_ms`, stamped just before the send) and of capture-to-received at a
subscriber (the send, and in the cluster cases the hop and the proxy, included). Every process started here is ended by its PID.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HTTP_OFF = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=4, help="synthetic streams")
    parser.add_argument("--fps", type=float, default=5.0, help="frame rate of each stream")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per case")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    parser.add_argument("--checkpoint", type=Path, help="model (default: the shipped one)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "auto"])
    parser.add_argument("--engine-threads", type=int, default=1)
    parser.add_argument("--messages", type=int, default=5000, help="messages in the proxy cost case")
    parser.add_argument("--no-kill", action="store_true", help="skip the worker-kill recovery measurement")
    parser.add_argument("--json-out", type=Path, help="where to write (default bench/results/cluster-<machine>.json)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


class Collector:
    """A SUB on the endpoint recording (stream, epoch, seq, capture wall time, capture_to_publish_ms, received)."""

    def __init__(self, endpoint: str) -> None:
        from ddavs_rt.publish.subscriber import Subscriber

        self.subscriber = Subscriber(endpoint)
        self.rows: list[tuple[str, int, int, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            frame = self.subscriber.recv(0.2)
            if frame is not None:
                h = frame.header
                self.rows.append((h.stream_id, h.epoch, h.seq, h.capture_wall_time, h.latency.capture_to_publish_ms, time.time()))

    def streams_seen(self, since: float = 0.0) -> set[str]:
        return {r[0] for r in list(self.rows) if r[5] >= since}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.subscriber.close()


def summarise(rows: list, start: float, end: float) -> dict:
    window = [r for r in rows if start <= r[5] < end]
    per_stream: dict[str, int] = defaultdict(int)
    for r in window:
        per_stream[r[0]] += 1
    seconds = max(end - start, 1e-9)
    sent = [r[4] for r in window]
    received = [(r[5] - r[3]) * 1000.0 for r in window]
    return {
        "seconds": round(seconds, 2),
        "fps_per_stream": {s: round(n / seconds, 2) for s, n in sorted(per_stream.items())},
        "fps_total": round(len(window) / seconds, 2),
        "capture_to_publish_ms": {"p50": _pct(sent, 50), "p95": _pct(sent, 95)},
        "capture_to_received_ms": {"p50": _pct(received, 50), "p95": _pct(received, 95)},
        "frames": len(window),
    }


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench-cluster: {what} within {timeout:.0f} s")
        time.sleep(0.2)


# ---------------------------------------------------------------------------------- proxy cost
def proxy_cost(messages: int) -> dict:
    """Direct vs through the proxy: same payload (a real header + 160x160 mask PNG), same pace."""
    import zmq

    from ddavs_rt.publish.proxy import HopPublisher, Proxy
    from ddavs_rt.publish.publisher import Publisher
    from ddavs_rt.publish.schema import FrameHeader, encode_message

    mask = np.zeros((160, 160), np.uint8)
    mask[40:100, 50:120] = 1

    def stamped(i: int) -> list[bytes]:
        header = FrameHeader(stream_id="bench", seq=i, frame_time=i / 25, capture_wall_time=time.time(),
                             audio_window={"start": 0, "end": 1}, model_id="bench", mask={"height": 160, "width": 160})
        parts = encode_message(header, mask)
        parts[3] = str(time.perf_counter()).encode()  # the send time rides in the overlay part
        return parts

    def one_case(publisher, endpoint: str) -> dict:
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        sub.rcvhwm = messages + 10
        sub.subscribe(b"ddavs/")
        sub.connect(endpoint)
        publisher.wait_for_subscriber(10)
        time.sleep(0.3)
        # latency: one message in flight at a time (no queueing), as at live frame rates
        latencies = []
        for i in range(min(messages, 2000)):
            publisher.send(stamped(i))
            if sub.poll(2000):
                got = sub.recv_multipart()
                latencies.append((time.perf_counter() - float(got[3])) * 1e6)
        # throughput: a burst of `messages`, timed until the last arrives
        received = 0
        started = time.perf_counter()
        for i in range(messages):
            publisher.send(stamped(i))
            while sub.poll(0):
                sub.recv_multipart()
                received += 1
        while received < messages and sub.poll(2000):
            sub.recv_multipart()
            received += 1
        elapsed = time.perf_counter() - started
        sub.close(linger=0)
        context.term()
        return {"latency_messages": len(latencies),
                "latency_us": {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "p99": _pct(latencies, 99)},
                "burst_received": received, "burst_messages_per_s": round(received / elapsed, 1)}

    direct_pub = Publisher("tcp://127.0.0.1:*", send_hwm=messages + 10)
    try:
        direct = one_case(direct_pub, direct_pub.endpoint)
    finally:
        direct_pub.close()
    proxy = Proxy("tcp://127.0.0.1:*", send_hwm=messages + 10, receive_hwm=messages + 10)
    proxy.start()
    hop = HopPublisher(proxy.hop_endpoint, send_hwm=messages + 10)
    try:
        proxied = one_case(hop, proxy.publish_endpoint)
    finally:
        hop.close()
        proxy.close()
    size = sum(len(p) for p in encode_message(
        FrameHeader(stream_id="bench", seq=0, frame_time=0, capture_wall_time=0, audio_window={"start": 0, "end": 1},
                    model_id="bench", mask={"height": 160, "width": 160}), mask))
    extra = None
    if direct["latency_us"]["p50"] is not None and proxied["latency_us"]["p50"] is not None:
        extra = round(proxied["latency_us"]["p50"] - direct["latency_us"]["p50"], 1)
    return {"message_bytes": size, "messages": messages, "direct": direct, "through_proxy": proxied,
            "proxy_adds_p50_us": extra}


# -------------------------------------------------------------------------------- direct runtime
def direct_case(args, site: dict, seconds: float) -> dict:
    from ddavs_rt.config import RuntimeConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.runtime.runner import Runtime

    port = _free_port()
    config = RuntimeConfig.model_validate({**site, "publish": f"tcp://127.0.0.1:{port}"})
    engine = open_engine(config.engine, backend=config.backend, threads=args.engine_threads)
    runtime = Runtime(config, engine)
    collector = Collector(f"tcp://127.0.0.1:{port}")
    stop = threading.Event()
    serving = threading.Thread(target=runtime.run, args=(stop,), daemon=True)
    try:
        runtime.start()
        serving.start()
        ids = {s["id"] for s in site["sources"]}
        _wait(lambda: collector.streams_seen() >= ids, 300, "the direct runtime did not publish every stream")
        start = time.time()
        time.sleep(seconds)
        return summarise(collector.rows, start, time.time())
    finally:
        stop.set()
        serving.join(timeout=15)
        collector.close()
        runtime.close()


# ---------------------------------------------------------------------------------- cluster case
class _Processes:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.items: list[subprocess.Popen] = []

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        process = subprocess.Popen(argv, stdout=open(self.folder / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        self.items.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.items):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in reversed(self.items):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _worker_pid(port: int) -> int | None:
    """The PID of the process listening on 127.0.0.1:`port` (the worker under its nanny)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.split()[3] == f"127.0.0.1:{port}":
            found = re.search(r"pid=(\d+),", line)
            return int(found.group(1)) if found else None
    return None


def cluster_case(args, site: dict, workers: int, seconds: float, folder: Path) -> dict:
    processes = _Processes(folder)
    scheduler_port, publish, metrics = _free_port(), _free_port(), _free_port()
    worker_ports = [_free_port() for _ in range(workers)]
    site_path = folder / f"site-{workers}w.json"
    site_path.write_text(json.dumps(site))
    collector = Collector(f"tcp://127.0.0.1:{publish}")
    try:
        processes.spawn("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                      "--port", str(scheduler_port), *HTTP_OFF])
        _wait(lambda: _port_open(scheduler_port), 120, "the scheduler did not listen")
        for i, port in enumerate(worker_ports):
            processes.spawn(f"worker{i}", [sys.executable, "-m", "distributed.cli.dask_worker",
                                           f"tcp://127.0.0.1:{scheduler_port}", "--host", "127.0.0.1",
                                           "--worker-port", str(port), "--nthreads", str(args.streams), *HTTP_OFF])
        _wait(lambda: all(_port_open(p) for p in worker_ports), 120, "the workers did not listen")
        processes.spawn("cli", [sys.executable, "-m", "ddavs_rt.cli", "--config", str(site_path),
                                "--dask", f"tcp://127.0.0.1:{scheduler_port}", "--shards", str(workers),
                                "--engine-threads", str(args.engine_threads), "--publish", f"tcp://127.0.0.1:{publish}",
                                "--metrics", f"127.0.0.1:{metrics}"])
        ids = {s["id"] for s in site["sources"]}
        _wait(lambda: collector.streams_seen() >= ids, 300, f"{workers} worker(s) did not publish every stream")
        start = time.time()
        time.sleep(seconds)
        result = summarise(collector.rows, start, time.time())
        result["workers"] = workers
        if not args.no_kill:
            shard0 = {s["id"] for s in site["sources"][0::workers]}  # the round-robin split of submit.py
            result["recovery"] = _kill_and_recover(collector, metrics, shard0)
        return result
    finally:
        collector.close()
        processes.stop()


def _kill_and_recover(collector: Collector, metrics_port: int, shard0: set[str]) -> dict:
    """Kill the worker process running shard 0; seconds until each of its streams publishes again."""
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).read().decode()
    found = re.search(r'ddavs_cluster_shard_epoch\{shard="0",worker="tcp://127\.0\.0\.1:(\d+)"\}', scrape)
    if found is None:
        return {"error": "shard 0 was not reporting"}
    port = int(found.group(1))
    pid = _worker_pid(port)
    if pid is None:
        return {"error": f"no process listens on worker port {port}"}
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    back: dict[str, float] = {}

    def recovered() -> bool:
        for r in list(collector.rows):
            if r[5] > killed_at and r[1] >= 1 and r[0] not in back:
                back[r[0]] = r[5] - killed_at
        return shard0 <= set(back)

    try:
        _wait(recovered, 180, "the killed worker's streams did not come back")
    except RuntimeError as error:
        return {"error": str(error), "back_s": back}
    return {"killed_worker_port": port, "streams_restarted": sorted(back),
            "seconds_to_first_frame": {s: round(t, 2) for s, t in sorted(back.items())},
            "max_s": round(max(back.values()), 2)}


# ---------------------------------------------------------------------------------------- command
def run(args: argparse.Namespace) -> int:
    from ddavs_rt.atomic import atomic_write_text
    from ddavs_rt.engine.machine import describe_machine, machine_slug
    from ddavs_rt.runtime.cli import SHIPPED_MODEL

    checkpoint = args.checkpoint or SHIPPED_MODEL
    site = {"engine": str(checkpoint), "backend": args.backend, "overlay": False,
            "sources": [{"kind": "synthetic", "id": f"s{i}", "fps": args.fps, "seed": i + 1}
                        for i in range(args.streams)]}
    counts = [int(v) for v in args.workers.split(",") if v.strip()]
    load_before = os.getloadavg()
    result: dict = {
        "bench": "cluster", "machine": describe_machine(),
        "shared_machine": True,
        "note": ("measured on a machine shared with other jobs (load average given): compare the cases of this "
                 "one run with each other, not with other files"),
        "load_average_before": [round(v, 2) for v in load_before],
        "settings": {"streams": args.streams, "fps": args.fps, "seconds": args.seconds, "model": str(checkpoint),
                     "backend": args.backend, "engine_threads": args.engine_threads},
    }
    print("bench-cluster: proxy cost per message ...", flush=True)
    result["proxy_per_message"] = proxy_cost(args.messages)
    print("bench-cluster: direct runtime ...", flush=True)
    result["direct"] = direct_case(args, site, args.seconds)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as scratch:
        for n in counts:
            print(f"bench-cluster: {n} worker(s) ...", flush=True)
            result[f"cluster_{n}w"] = cluster_case(args, site, n, args.seconds, Path(scratch))
    result["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    out = args.json_out or Path("bench/results") / f"cluster-{machine_slug()}-{time.strftime('%Y-%m-%d')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"bench-cluster: wrote {out}")
    return 0

"""Engine-fault scenarios (issue 12, item 3): what an exception inside `engine.infer` costs.

    .venv/bin/python bench/faults_engine.py --engine runs/model.onnx      # both scenarios

Real parts: the real engine (ONNX Runtime or torch) wrapped by a test double only to raise the
exception, real synthetic live streams, the real runtime and a real ZeroMQ subscriber on
127.0.0.1 that stamps each message's arrival. Two scenarios:

- `one-batch`: the engine raises on one batch. The runtime drops that try, retries its frames
  one by one and publishes them. Reported: frames lost per stream, sequence gaps seen by the
  subscriber, p95 of capture-to-received of frames captured before the fault, in the 2 s after it,
  and later.
- `poisoned-stream`: every frame of one stream makes the engine raise (while the others are fine).
  That stream is faulted after 3 failures in a row; the others go on. Reported: frames lost,
  time from the first failure to the fault, the other streams' sequence gaps, p95 before /
  during / after.

`run_engine_fault(engine_path, backend)` returns the dict for one JSON entry; bench/faults.py
lists it as its "engine-fault" scenario. Alone, this script writes
`bench/results/faults-engine-<date>.json` (or `--out`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
MAGIC = np.array([7, 77, 177], np.uint8)  # stamped into the poisoned stream's frames (top-left 8x8)


class FaultInjectingEngine:
    """The real engine; raises on the next call once `arm()`ed, or on any batch holding a frame
    stamped with MAGIC while `poison` is on."""

    def __init__(self, engine) -> None:
        self.inner = engine
        self.spec = engine.spec
        self.poison = False
        self.first_failure: float | None = None
        self._armed = threading.Event()

    def arm(self) -> None:
        self._armed.set()

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        if self._armed.is_set():
            self._armed.clear()
            self._failed()
            raise RuntimeError("injected engine fault (one batch)")
        if self.poison and any((f[:8, :8] == MAGIC).all() for f in frames):
            self._failed()
            raise ValueError("injected: this stream's input breaks the engine")
        return self.inner.infer(frames, audio)

    def _failed(self) -> None:
        if self.first_failure is None:
            self.first_failure = time.time()

    def close(self) -> None:
        self.inner.close()


class Receiver:
    """A SUB socket on its own thread: (stream, seq, capture wall time, arrival wall time)."""

    def __init__(self, endpoint: str) -> None:
        from ddavs_rt.publish.schema import decode_message

        self._decode = decode_message
        self.rows: list[tuple[str, int, float, float]] = []
        self._stop = threading.Event()
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.rcvhwm = 10000
        self._socket.setsockopt(zmq.SUBSCRIBE, b"ddavs/")
        self._socket.connect(endpoint)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._socket.poll(100):
                parts = self._socket.recv_multipart()
                now = time.time()
                h = self._decode(parts).header
                self.rows.append((h.stream_id, h.seq, h.capture_wall_time, now))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._socket.close()


def _p95(values: list[float]) -> float | None:
    return float(np.percentile(values, 95)) if values else None


def _seq_gaps(seqs: list[int]) -> int:
    return int(sum(max(0, b - a - 1) for a, b in zip(seqs, seqs[1:])))


def _phases(rows, fault_at: float, streams: list[str], during_s: float = 2.0) -> dict:
    """p95 capture-to-received (ms) of frames captured before / within `during_s` after / later."""
    out = {}
    for sid in streams:
        mine = [(capture, arrival) for s, _, capture, arrival in rows if s == sid]
        before = [(a - c) * 1000 for c, a in mine if c < fault_at]
        during = [(a - c) * 1000 for c, a in mine if fault_at <= c < fault_at + during_s]
        after = [(a - c) * 1000 for c, a in mine if c >= fault_at + during_s]
        out[sid] = {"p95_ms_before": _p95(before), "p95_ms_during": _p95(during), "p95_ms_after": _p95(after),
                    "frames_before": len(before), "frames_during": len(during), "frames_after": len(after)}
    return out


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    return condition()


def _scenario(engine_path: Path, backend: str, mode: str, streams: int, fps: float, phase_s: float) -> dict:
    import socket

    from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
    from ddavs_rt.engine import open_engine
    from ddavs_rt.runtime.runner import Runtime

    engine = FaultInjectingEngine(open_engine(engine_path, backend=backend, threads=1))
    size = engine.spec.input_size[0]  # frames at the engine's size: the stamp reaches it unresized
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    ids = [f"e{i}" for i in range(streams)]
    config = RuntimeConfig(
        sources=[SyntheticSourceConfig(id=sid, seed=500 + i, fps=fps, size=size) for i, sid in enumerate(ids)],
        publish=endpoint, overlay=False, max_batch=streams,
    )
    runtime = Runtime(config, engine)
    poisoned = runtime.streams[1]
    original_take = poisoned.take

    def stamped_take():
        frame = original_take()
        if frame is not None and engine.poison:
            frame.image = frame.image.copy()
            frame.image[:8, :8] = MAGIC
        return frame

    poisoned.take = stamped_take  # the scheduler takes the stream's newest frame through it
    receiver = Receiver(endpoint)
    stop = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            runtime.run(stop)
        except BaseException as error:  # noqa: BLE001 - reported in the JSON
            errors.append(error)

    fault_at = None
    try:
        runtime.start()
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        _wait(lambda: len(receiver.rows) >= streams * 5, 120)  # warmed up
        time.sleep(phase_s)
        fault_at = time.time()
        if mode == "one-batch":
            engine.arm()
            _wait(lambda: runtime.scheduler.failed_batches >= 1, 60)
        else:
            engine.poison = True
            _wait(lambda: poisoned.fault is not None, 120)
        faulted_at = time.time()
        time.sleep(phase_s)
        health = {h.stream_id: h for h in runtime.health()}
        stop.set()
        thread.join(timeout=60)
    finally:
        stop.set()
        runtime.close()
        receiver.close()
    rows = list(receiver.rows)
    per_stream = _phases(rows, fault_at, ids)
    for sid in ids:
        seqs = sorted(seq for s, seq, _, _ in rows if s == sid)
        per_stream[sid].update({
            "received": len(seqs),
            "seq_gaps": _seq_gaps(seqs),
            "frames_lost_to_engine": health[sid].engine_failed_frames,
            "faulted": health[sid].fault is not None,
        })
    result = {
        "streams": streams, "fps": fps, "phase_s": phase_s,
        "failed_batches": runtime.scheduler.failed_batches,
        "run_error": f"{type(errors[0]).__name__}: {errors[0]}" if errors else None,
        "per_stream": per_stream,
    }
    if mode == "poisoned-stream":
        result["poisoned_stream"] = poisoned.stream_id
        result["seconds_from_first_failure_to_fault"] = (
            round(faulted_at - engine.first_failure, 3) if engine.first_failure and poisoned.fault else None)
        result["others_seq_gaps"] = sum(per_stream[sid]["seq_gaps"] for sid in ids if sid != poisoned.stream_id)
    return result


def run_engine_fault(engine_path: Path, backend: str, streams: int = 3, fps: float = 5.0, phase_s: float = 10.0) -> dict:
    return {
        "what": "an exception injected inside engine.infer (a test double around the real engine); "
                "p95 is capture to received by a real subscriber",
        "one_batch": _scenario(engine_path, backend, "one-batch", streams, fps, phase_s),
        "poisoned_stream": _scenario(engine_path, backend, "poisoned-stream", streams, fps, phase_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True, help="an exported .onnx (or a checkpoint with --backend torch)")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds before and after the fault")
    parser.add_argument("--note", default="")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    from ddavs_rt.atomic import atomic_write_text
    from ddavs_rt.engine.machine import describe_machine

    started = dt.datetime.now(dt.timezone.utc)
    result = {
        "benchmark": "bench/faults_engine.py",
        "started_utc": started.isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "machine_shared": "a 2-core VM shared with other engineers' work: latencies are loaded figures",
        "note": args.note,
        "engine_fault": run_engine_fault(Path(args.engine), args.backend, args.streams, args.fps, args.phase_s),
    }
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"faults-engine-{started.date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    print(json.dumps(result["engine_fault"], indent=1)[:3000])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

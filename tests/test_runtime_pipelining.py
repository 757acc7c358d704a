"""The scheduler's threads: inference loops side by side, publishing on the scheduler thread.

Real parts: the session's real checkpoint on the torch engine, wrapped by a test double only to
hold calls for a set time and to record when they ran; real synthetic sources; a real ZeroMQ
subscriber on 127.0.0.1.

- two loops infer at once, later batches finish first, and still every stream's frames leave in
  capture order with continuous sequence numbers;
- the next batch is inferred while the scheduler thread is still publishing the last one;
- how many loops: the config's number, never more than the engine runs at once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
from ddavs_rt.engine import open_engine
from ddavs_rt.runtime.runner import Runtime
from ddavs_rt.runtime.scheduler import inference_workers
from support.listener import HeaderListener
from support.rtsp_server import free_port

WAIT_S = 180.0  # generous: a loaded 2-core machine


class HeldEngine:
    """The real engine; call k is held `slow_s` after its answer when k is odd, so a call that
    started later often finishes first. Records each call's (start, end) and the most at once."""

    def __init__(self, engine, concurrency: int, slow_s: float = 0.0) -> None:
        self.inner = engine
        self.spec = engine.spec
        self.concurrency = concurrency
        self.slow_s = slow_s
        self._lock = threading.Lock()
        self.calls = 0
        self.active = 0
        self.most_at_once = 0
        self.spans: list[tuple[float, float]] = []
        self.finish_order: list[int] = []  # call numbers in the order they returned

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            number = self.calls
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
        started = time.monotonic()
        try:
            logits = self.inner.infer(frames, audio)
            if number % 2 == 1:
                time.sleep(self.slow_s)
            return logits
        finally:
            with self._lock:
                self.active -= 1
                self.spans.append((started, time.monotonic()))
                self.finish_order.append(number)

    def close(self) -> None:
        self.inner.close()


def _run_until(runtime: Runtime, condition) -> None:
    stop, errors = threading.Event(), []

    def body() -> None:
        try:
            runtime.run(stop)
        except BaseException as error:  # noqa: BLE001 - checked below
            errors.append(error)

    runtime.start()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=60)
    assert not errors, errors
    assert condition()


def _config(port: int, streams: int, **fields) -> RuntimeConfig:
    return RuntimeConfig(
        sources=[SyntheticSourceConfig(id=f"s{i}", seed=30 + i, fps=12, size=160) for i in range(streams)],
        publish=f"tcp://127.0.0.1:{port}", overlay=False, **fields,
    )


def test_two_inference_loops_overlap_finish_out_of_order_and_every_stream_still_leaves_in_capture_order(
    checkpoint: Path,
) -> None:
    port = free_port()
    # batches of one frame: many batches, so many chances for a later one to finish first
    engine = HeldEngine(open_engine(checkpoint, backend="torch", threads=1), concurrency=2, slow_s=0.06)
    runtime = Runtime(_config(port, 3, max_batch=1, batch_deadline_ms=0), engine)
    listener = HeaderListener(port)
    try:
        _run_until(runtime, lambda: all(len(listener.of(f"s{i}")) >= 25 for i in range(3)))
    finally:
        runtime.close()
        listener.close()
    assert runtime.scheduler.workers == 2
    assert engine.most_at_once == 2  # the two loops did infer side by side
    order = engine.finish_order
    assert any(later < earlier for earlier, later in zip(order, order[1:]))  # some calls finished before older ones
    for i in range(3):
        got = listener.of(f"s{i}")
        seqs = [h.seq for h in got]
        times = [h.frame_time for h in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # continuous: nothing lost, nothing swapped
        assert times == sorted(times) and len(set(times)) == len(times)  # capture order


def test_the_next_batch_is_inferred_while_the_last_one_is_still_being_published(checkpoint: Path) -> None:
    port = free_port()
    engine = HeldEngine(open_engine(checkpoint, backend="torch", threads=1), concurrency=1)
    runtime = Runtime(_config(port, 2, inference_workers=1), engine)
    publishing: list[tuple[float, float]] = []  # spans of the (slow) work after each frame was sent

    def slow_observer(*_args) -> None:  # stands in for slow per-frame work on the scheduler thread
        started = time.monotonic()
        time.sleep(0.03)
        publishing.append((started, time.monotonic()))

    runtime.scheduler.on_published.append(slow_observer)
    listener = HeaderListener(port)
    try:
        _run_until(runtime, lambda: len(publishing) >= 30)
    finally:
        runtime.close()
        listener.close()
    assert runtime.scheduler.workers == 1
    overlapping = [span for span in engine.spans
                   if any(p0 < span[0] < p1 for p0, p1 in publishing)]  # a call began during publishing
    assert len(overlapping) >= 5


def test_inference_loops_are_what_the_config_asks_but_never_more_than_the_engine_runs_at_once(
    checkpoint: Path, caplog
) -> None:
    inner = open_engine(checkpoint, backend="torch", threads=1)
    config = _config(5555, 2)
    assert inference_workers(config, HeldEngine(inner, concurrency=3)) == 3  # default: the engine's own number
    assert inference_workers(config.model_copy(update={"inference_workers": 2}), HeldEngine(inner, concurrency=3)) == 2
    assert inference_workers(config, inner) == 1  # torch: one call at a time to good effect
    with caplog.at_level(logging.WARNING, logger="ddavs_rt.runtime.scheduler"):
        assert inference_workers(config.model_copy(update={"inference_workers": 4}), inner) == 1
    assert "inference_workers 4" in caplog.text and "using 1" in caplog.text

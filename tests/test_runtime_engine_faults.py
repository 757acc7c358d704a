"""Engine faults are contained: a real engine (torch, a real checkpoint) wrapped by a test double
only to inject the exception, real synthetic sources, a real ZeroMQ subscriber on 127.0.0.1.

- one batch fails: it is retried frame by frame, nothing is lost, every stream goes on;
- one stream's frames poison the engine: that stream is faulted, the others keep publishing;
- the engine itself keeps failing (the blank probe fails too): `run` ends with EngineFailed;
- a lone stream that poisons the engine: the probe tells it from an engine failure.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ddavs_rt.config import RuntimeConfig, SyntheticSourceConfig
from ddavs_rt.engine import open_engine
from ddavs_rt.errors import EngineFailed
from ddavs_rt.runtime.runner import Runtime
from support.listener import HeaderListener
from support.rtsp_server import free_port

MAGIC = np.array([7, 77, 177], np.uint8)  # a corner stamped on the poisoned stream's frames
WAIT_S = 180.0  # generous: a loaded 2-core machine


class FaultInjectingEngine:
    """The real engine; raises only where a test asks (a call number, or a stamped frame)."""

    def __init__(self, engine, fail_calls: set[int] = frozenset(), poison: bool = False, fail_from: int | None = None,
                 fail_one_batch_from: int | None = None, concurrency: int = 1):
        self.inner = engine
        self.spec = engine.spec
        self.concurrency = concurrency  # > 1: the scheduler runs that many inference loops, calling at once
        self._lock = threading.Lock()
        self.calls = 0
        self.fail_calls = set(fail_calls)
        self.poison = poison
        self.fail_from = fail_from
        self.fail_one_batch_from = fail_one_batch_from  # the first call from this one with 2+ frames fails

    def infer(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            calls = self.calls
        if self.fail_one_batch_from is not None and calls >= self.fail_one_batch_from and len(frames) > 1:
            self.fail_one_batch_from = None
            raise RuntimeError(f"injected failure on call {calls}, a batch of {len(frames)}")
        if calls in self.fail_calls:
            raise RuntimeError(f"injected failure on call {calls}")
        if self.fail_from is not None and calls >= self.fail_from:
            raise RuntimeError("injected: the device is gone")
        if self.poison and any((f[:8, :8] == MAGIC).all() for f in frames):
            raise ValueError("injected: this input breaks the engine")
        return self.inner.infer(frames, audio)

    def close(self) -> None:
        self.inner.close()


def _config(port: int, streams: int) -> RuntimeConfig:
    return RuntimeConfig(
        sources=[SyntheticSourceConfig(id=f"s{i}", seed=10 + i, fps=8, size=160) for i in range(streams)],
        publish=f"tcp://127.0.0.1:{port}", overlay=False, max_batch=streams, batch_deadline_ms=60,
    )


def _stamp_frames(runtime: Runtime, stream_id: str) -> None:
    stream = next(s for s in runtime.streams if s.stream_id == stream_id)
    original = stream.take

    def stamped():
        frame = original()
        if frame is not None:
            frame.image = frame.image.copy()
            frame.image[:8, :8] = MAGIC
        return frame

    stream.take = stamped  # the scheduler takes each stream's newest frame through it


def _wait_for(condition, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _serve(runtime: Runtime, stop: threading.Event, errors: list[BaseException]) -> threading.Thread:
    def body() -> None:
        try:
            runtime.run(stop)
        except BaseException as error:  # noqa: BLE001 - checked by the test
            errors.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread


def test_one_failing_batch_is_retried_frame_by_frame_and_no_stream_loses_a_frame(checkpoint: Path) -> None:
    port = free_port()
    # a batch, not a lone frame (which has no one-by-one retry): which call that is depends on timing
    engine = FaultInjectingEngine(open_engine(checkpoint, backend="torch", threads=1), fail_one_batch_from=6)
    runtime = Runtime(_config(port, 3), engine)
    listener = HeaderListener(port)
    stop, errors = threading.Event(), []
    try:
        runtime.start()
        thread = _serve(runtime, stop, errors)
        assert _wait_for(lambda: runtime.scheduler.failed_batches == 1 and
                         all(len(listener.seqs(f"s{i}")) >= 15 for i in range(3)))
        stop.set()
        thread.join(timeout=60)
    finally:
        stop.set()
        runtime.close()
        listener.close()
    assert not errors
    assert runtime.scheduler.failed_batches == 1
    for stream in runtime.streams:
        assert stream.fault is None and stream.counters.engine_failed_frames == 0
        seqs = listener.seqs(stream.stream_id)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # continuous: nothing lost or skipped


@pytest.mark.parametrize("loops", [1, 2], ids=["one-inference-loop", "two-inference-loops"])
def test_a_stream_that_poisons_the_engine_is_faulted_and_the_others_keep_publishing(checkpoint: Path, loops: int) -> None:
    port = free_port()
    engine = FaultInjectingEngine(open_engine(checkpoint, backend="torch", threads=1), poison=True, concurrency=loops)
    runtime = Runtime(_config(port, 3), engine)
    _stamp_frames(runtime, "s1")
    listener = HeaderListener(port)
    stop, errors = threading.Event(), []
    try:
        runtime.start()
        thread = _serve(runtime, stop, errors)
        bad = runtime.streams[1]
        assert _wait_for(lambda: bad.fault is not None), "the poisoned stream was never faulted"
        counts = {sid: len(listener.seqs(sid)) for sid in ("s0", "s2")}
        # after the fault, the healthy streams go on publishing
        assert _wait_for(lambda: all(len(listener.seqs(sid)) >= counts[sid] + 10 for sid in counts))
        health = {h.stream_id: h for h in runtime.health()}
        stop.set()
        thread.join(timeout=60)
    finally:
        stop.set()
        runtime.close()
        listener.close()
    assert not errors
    assert listener.seqs("s1") == []  # every frame of s1 failed: none was published
    assert "engine failed on 3 frames of this stream in a row but works on other input" in (health["s1"].error or "")
    assert health["s1"].engine_failed_frames >= 3 and health["s1"].fault
    for sid in ("s0", "s2"):
        assert health[sid].fault is None and health[sid].engine_failed_frames == 0
        seqs = listener.seqs(sid)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert not any(h.drops.engine_failed for h in listener.headers if h.stream_id != "s1")


@pytest.mark.parametrize("loops", [1, 2], ids=["one-inference-loop", "two-inference-loops"])
def test_an_engine_that_keeps_failing_ends_the_run_with_one_line(checkpoint: Path, loops: int) -> None:
    port = free_port()
    engine = FaultInjectingEngine(open_engine(checkpoint, backend="torch", threads=1), fail_from=4, concurrency=loops)
    runtime = Runtime(_config(port, 2), engine)
    stop = threading.Event()
    gave_up = threading.Event()
    timer = threading.Timer(WAIT_S, lambda: (gave_up.set(), stop.set()))  # a safety net: the run must end by itself
    timer.start()
    try:
        runtime.start()
        with pytest.raises(EngineFailed) as caught:
            runtime.run(stop)
    finally:
        timer.cancel()
        runtime.close()
    assert not gave_up.is_set()
    message = str(caught.value)
    assert "\n" not in message and "keeps failing" in message and "the device is gone" in message


def test_a_lone_stream_that_poisons_the_engine_is_faulted_not_taken_for_an_engine_failure(checkpoint: Path) -> None:
    # One stream: every batch is its frame alone, so only the blank probe can tell that the engine
    # still works; the stream is faulted and, being the only one, the run ends without EngineFailed.
    port = free_port()
    engine = FaultInjectingEngine(open_engine(checkpoint, backend="torch", threads=1), poison=True)
    runtime = Runtime(_config(port, 1), engine)
    _stamp_frames(runtime, "s0")
    stop = threading.Event()
    gave_up = threading.Event()
    timer = threading.Timer(WAIT_S, lambda: (gave_up.set(), stop.set()))  # a safety net: the run must end by itself
    timer.start()
    try:
        runtime.start()
        runtime.run(stop)  # returns: its only stream ended (faulted); no EngineFailed
        health = runtime.health()[0]
    finally:
        timer.cancel()
        runtime.close()
    assert not gave_up.is_set(), "the run did not end by itself"
    assert health.fault and "works on other input" in health.fault
    assert health.engine_failed_frames == 3 and health.processed == 0


def test_a_passing_engine_fault_on_every_stream_faults_none_of_them(checkpoint: Path) -> None:
    """The engine fails 8 calls in a row on two streams, then works: when the first stream reaches
    3 failures the blank probe works and the other stream was failing too, so it was the engine,
    briefly: no stream is faulted and serving goes on. Driven step by step on this thread (which
    therefore owns the real publisher socket)."""
    from ddavs_rt.capture.types import VideoFrame
    from ddavs_rt.publish.publisher import Publisher
    from ddavs_rt.runtime.scheduler import Scheduler
    from ddavs_rt.runtime.stream import Stream

    engine = FaultInjectingEngine(open_engine(checkpoint, backend="torch", threads=1), fail_calls=set(range(1, 9)))
    wake = threading.Event()
    streams = [Stream(f"s{i}", engine.spec.sample_rate, 2.0, wake) for i in range(2)]
    config = _config(free_port(), 2)
    scheduler = Scheduler(streams, engine, lambda: Publisher("tcp://127.0.0.1:*"), config, wake)
    scheduler.publisher = scheduler.open_publisher()
    h, w = engine.spec.input_size
    try:
        published = []
        for step in range(5):
            for stream in streams:
                stream.on_video(VideoFrame(stream.stream_id, step, step * 0.1, time.time(),
                                           np.full((h, w, 3), 40 * step, np.uint8)))
            published.append(scheduler.step())
    finally:
        scheduler.publisher.close()
        engine.close()
    # batches 1-2 lost both frames; batch 3: s0's retry failed (its 3rd), the probe (call 9) worked,
    # s1's retry (call 10) worked; batches 4-5 whole
    assert published == [0, 0, 1, 2, 2]
    assert [s.fault for s in streams] == [None, None]
    assert [s.counters.engine_failed_frames for s in streams] == [3, 2]
    assert scheduler.failed_batches == 3

"""The scheduler: newest frame of each stream -> one batch -> one engine -> publish.

Threads. `Scheduler.serve` runs on the scheduler thread: it opens the publisher (so its ZeroMQ
socket is created, used and closed on this thread and no other), starts the inference loops,
publishes what they hand it, and when told to stop ends them, publishes what they had in hand and
closes the publisher. Each inference loop (thread `inference-N`) waits for a frame on any stream,
then up to `batch_deadline_ms` for the other streams to offer theirs (so streams are batched
together when they arrive close in time), takes the newest pending frame of each stream (at most
`max_batch`, round-robin across rounds so no stream starves), waits a bounded time
(`audio_wait_ms`) for audio that has not yet arrived for those frames, cuts each frame's 1-second
window and runs the engine once for the batch. The scheduler thread turns each batch's logits
into masks, overlays and messages and sends them, while the loops already infer the next batches:
inference runs back to back instead of waiting for the publishing.

How many inference loops: `inference_workers`, or by default the engine's `concurrency` (how many
calls it runs at once to good effect: 1 for most; an OpenVINO graph compiled with the THROUGHPUT
hint runs one call per CPU stream). Only one loop collects a batch at a time, and batches carry
tickets taken when they are collected: the scheduler thread publishes them in ticket order, so
each stream's frames leave in capture order whichever loop finished first. At most
`inference_workers + 1` batches are between collection and publication: when publishing falls
behind, the loops wait, and frames are dropped (and counted) where they wait, at the stream.

Faults are contained:
- A failure while post-processing or publishing one frame is logged and counted; it never stops
  the other streams.
- A failing engine call drops the batch (counted in `failed_batches`) and retries its frames one
  by one. Frames that succeed alone are published; a frame that fails alone is lost and counted
  for its stream. When one stream's frames have failed `FAULT_AFTER` times in a row, the engine
  is probed with a blank frame and silent audio: if the probe fails too, the engine itself is
  failing and `serve` ends with `EngineFailed` (one line; the runtime exits non-zero); if it
  works and no other stream is failing, that stream's input poisons the engine: the stream is
  *faulted* (served no more, `Stream.fault` says why) and the others go on; if it works while
  several streams were failing, the engine had a passing fault and every count starts again.

Times: `capture_to_publish_ms` is stamped into the header just before the message is encoded and
sent; capture-to-sent is taken after the send returned and goes to the stream's counters and the
`on_sent` observers (metrics), never into the message itself. Observers are called on the
scheduler thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ddavs_rt.capture.types import VideoFrame
from ddavs_rt.config import RuntimeConfig
from ddavs_rt.engine.base import Engine, resize_frames
from ddavs_rt.errors import EngineFailed
from ddavs_rt.publish.overlay import encode_jpeg, render_overlay
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.publish.schema import (
    AudioHealth,
    AudioWindowInfo,
    Drops,
    FrameHeader,
    Latency,
    MaskInfo,
    encode_message,
)
from ddavs_rt.runtime.postprocess import FrameResult, live_accuracy, logits_to_result
from ddavs_rt.runtime.stream import Stream
from ddavs_rt.sync import AudioWindow

log = logging.getLogger(__name__)

FAULT_AFTER = 3  # frames of one stream in a row that failed alone before the engine is probed
LOOP_JOIN_S = 5.0  # how long a stopping scheduler waits for its inference loops to bring their last batch


@dataclass(slots=True)
class _Inferred:
    """A batch the engine has run, on its way to the scheduler thread."""

    ticket: int  # order of collection: batches are published in this order
    batch: list[tuple[Stream, VideoFrame]]
    windows: list[AudioWindow]
    logits: list[np.ndarray | None]  # per frame; None where the engine failed on it
    t_infer: float  # wall time the engine call began
    infer_ms: float


def inference_workers(config: RuntimeConfig, engine: Engine) -> int:
    """How many inference loops: the config's number, else the engine's own `concurrency`; never
    more than the engine can run at once (a TensorRT context or a torch model runs one call)."""
    capacity = max(1, int(getattr(engine, "concurrency", 1)))
    wanted = config.inference_workers or capacity
    if wanted > capacity:
        log.warning("inference_workers %d: the %s engine runs %d call(s) at once to good effect; using %d",
                    wanted, engine.spec.backend, capacity, capacity)
        return capacity
    return wanted


class Scheduler:
    def __init__(
        self,
        streams: list[Stream],
        engine: Engine,
        open_publisher: Callable[[], Publisher],
        config: RuntimeConfig,
        wakeup: threading.Event,
    ) -> None:
        self.streams = streams
        self.engine = engine
        self.open_publisher = open_publisher
        self.publisher: Publisher | None = None  # opened and closed by `serve`, on its thread
        self.config = config
        self.wakeup = wakeup
        self.spec = engine.spec
        self.window_s = self.spec.window_samples / self.spec.sample_rate
        self.batches = 0
        self.batch_sizes: list[int] = []
        self.errors = 0  # frames whose post-processing or publishing failed
        self.failed_batches = 0  # engine calls that raised (the batch's first try)
        self.publisher_dropped: dict[str, int] = {s.stream_id: 0 for s in streams}
        self._start = 0
        self.workers = inference_workers(config, engine)
        self._collect_lock = threading.Lock()  # one inference loop collects a batch at a time
        self._fault_lock = threading.Lock()  # the engine-failure counts and judgements below
        self._slots = threading.Semaphore(self.workers + 1)  # batches between collection and publication
        self._done: queue.SimpleQueue[_Inferred] = queue.SimpleQueue()
        self._waiting: dict[int, _Inferred] = {}  # inferred batches waiting for their turn (scheduler thread)
        self._tickets = 0  # the next batch's ticket (under _collect_lock)
        self._next_ticket = 0  # the ticket published next (scheduler thread)
        self.epoch = 0  # the header's restart counter; a cluster shard sets it before running
        self._failures_in_a_row: dict[str, int] = {s.stream_id: 0 for s in streams}
        self._streak_began: dict[str, float] = {}  # stream -> monotonic time of the first failure in its row
        self._last_failure: dict[str, float] = {}  # stream -> monotonic time of its latest failure
        # Observers (metrics, recorder), called on the scheduler thread; they must not block.
        self.on_batch: list[Callable[[int, float], None]] = []  # (batch size, inference ms)
        # (stream id, header, mask PNG, overlay JPEG or None), after each frame is sent
        self.on_published: list[Callable[[str, FrameHeader, bytes, bytes | None], None]] = []
        # (stream id, capture-to-sent ms), after each send returned
        self.on_sent: list[Callable[[str, float], None]] = []

    # ------------------------------------------------------------------------------ threads
    def serve(self, stop: threading.Event, opened: threading.Event, failure: list[BaseException]) -> None:
        """The scheduler thread's body: open the publisher, run until `stop`, close the publisher.

        `opened` is set once the publisher is bound (or failed to bind: the error is appended to
        `failure`). An `EngineFailed` (or any error that escapes an inference loop or this thread)
        is appended to `failure` too, and ends the run.
        """
        try:
            self.publisher = self.open_publisher()
        except BaseException as error:  # noqa: BLE001 - handed to the thread that waits on `opened`
            failure.append(error)
            opened.set()
            return
        opened.set()
        try:
            self.run(stop, failure)
        except BaseException as error:  # noqa: BLE001 - the runtime reports it on its own thread
            failure.append(error)
        finally:
            self.publisher.close()

    def run(self, stop: threading.Event, failure: list[BaseException]) -> None:
        """Start the inference loops, publish their batches in ticket order until `stop` (or a loop
        failed), then end the loops and publish what they still had in hand."""
        self._prepare_engine()
        halt = threading.Event()  # stop, or an inference loop failed
        loops = [
            threading.Thread(target=self._inference_loop, args=(halt, failure), name=f"inference-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for loop in loops:
            loop.start()
        try:
            while not halt.is_set():
                if stop.is_set():
                    halt.set()
                    break
                self._publish_ready(wait_s=0.1)
        finally:
            halt.set()
            give_up = time.monotonic() + LOOP_JOIN_S
            for loop in loops:
                loop.join(timeout=max(0.0, give_up - time.monotonic()))
                if loop.is_alive():  # stuck in the engine: whatever it still brings is not published
                    log.warning("inference loop %s did not stop within %.0f s", loop.name, LOOP_JOIN_S)
            self._publish_ready(wait_s=0.0, drain=True)

    def _inference_loop(self, halt: threading.Event, failure: list[BaseException]) -> None:
        """One inference loop: collect a batch (one loop at a time), infer it, hand it over."""
        try:
            while not halt.is_set():
                if not self._slots.acquire(timeout=0.1):  # publishing is behind: take no more frames
                    continue
                with self._collect_lock:
                    batch = self._collect(halt)
                    ticket = self._tickets
                    if batch:
                        self._tickets += 1
                if not batch:
                    self._slots.release()
                    continue
                self._done.put(self._infer_batch(ticket, batch))
        except BaseException as error:  # noqa: BLE001 - ends the run; the runtime reports it
            failure.append(error)
            halt.set()

    def _collect(self, halt: threading.Event) -> list[tuple[Stream, VideoFrame]]:
        """Wait (at most 0.1 s) for a frame, then up to the deadline for every stream's, and take them."""
        if not self.wakeup.wait(0.1) or halt.is_set():
            return []
        self.wakeup.clear()
        deadline = time.monotonic() + self.config.batch_deadline_ms / 1000.0
        while time.monotonic() < deadline and not all(s.has_pending() for s in self._live_streams()):
            time.sleep(0.0005)
        batch = self._take_batch()
        if any(s.has_pending() for s in self._live_streams()):
            self.wakeup.set()
        return batch

    def _publish_ready(self, wait_s: float, drain: bool = False) -> None:
        """Publish every inferred batch whose turn has come (waiting at most `wait_s` for one).
        `drain`: the loops have ended; publish what is left in ticket order, skipping the tickets
        of batches that will never come (a loop that failed or is stuck)."""
        try:
            item = self._done.get(timeout=wait_s) if wait_s > 0 else self._done.get_nowait()
            self._waiting[item.ticket] = item
            while True:
                item = self._done.get_nowait()
                self._waiting[item.ticket] = item
        except queue.Empty:
            pass
        if drain:
            for ticket in sorted(self._waiting):
                self._publish_batch(self._waiting.pop(ticket))
            return
        while self._next_ticket in self._waiting:
            self._publish_batch(self._waiting.pop(self._next_ticket))
            self._next_ticket += 1
            self._slots.release()

    def _live_streams(self) -> list[Stream]:
        return [s for s in self.streams if s.fault is None]

    def step(self) -> int:
        """Serve one batch on the calling thread (collect, infer, publish); returns the number of frames published."""
        batch = self._take_batch()
        if not batch:
            return 0
        return self._publish_batch(self._infer_batch(-1, batch))

    def _infer_batch(self, ticket: int, batch: list[tuple[Stream, VideoFrame]]) -> _Inferred:
        windows = self._audio_windows(batch)
        t_infer = time.time()
        logits = self._infer(batch, windows)
        return _Inferred(ticket, batch, windows, logits, t_infer, (time.time() - t_infer) * 1000.0)

    def _publish_batch(self, item: _Inferred) -> int:
        """Post-process, encode and send each frame of an inferred batch; returns the number sent."""
        self.batches += 1
        self.batch_sizes.append(len(item.batch))
        if len(self.batch_sizes) > 10000:
            del self.batch_sizes[:5000]
        self._notify(self.on_batch, len(item.batch), item.infer_ms)
        published = 0
        for (stream, frame), window, frame_logits in zip(item.batch, item.windows, item.logits):
            if frame_logits is None:
                continue
            try:
                self._publish(stream, frame, window, frame_logits, item.t_infer, item.infer_ms)
                published += 1
            except Exception:  # one frame's failure must not stop the others
                self.errors += 1
                log.exception("stream %s: publishing frame %d failed", stream.stream_id, frame.index)
        return published

    # ------------------------------------------------------------------------------ batch
    def _take_batch(self) -> list[tuple[Stream, VideoFrame]]:
        order = self.streams[self._start :] + self.streams[: self._start]
        self._start = (self._start + 1) % max(1, len(self.streams))
        batch: list[tuple[Stream, VideoFrame]] = []
        for stream in order:
            if len(batch) >= self.config.max_batch:
                break
            frame = stream.take()
            if frame is None:
                continue
            if stream.fault is not None:  # served no more; its frames are counted as dropped
                stream.frames_dropped += 1
                continue
            batch.append((stream, frame))
        return batch

    def _audio_windows(self, batch: list[tuple[Stream, VideoFrame]]) -> list[AudioWindow]:
        offset = self.config.audio_offset_s
        give_up = time.monotonic() + self.config.audio_wait_ms / 1000.0
        for stream, frame in batch:
            if not stream.audio_live():  # no audio, or a microphone in an outage: nothing to wait for
                continue
            while not stream.ring.ready(frame.time, offset) and time.monotonic() < give_up:
                time.sleep(0.001)
        return [stream.ring.window(frame.time, self.window_s, offset) for stream, frame in batch]

    def _inputs(self, batch: list[tuple[Stream, VideoFrame]], windows: list[AudioWindow]) -> tuple[np.ndarray, np.ndarray]:
        # Streams may differ in frame size: each frame takes the engine's size (by the engine's own
        # resize, the one place it is done) so that they stack into one batch.
        size = self.spec.input_size
        frames = np.concatenate([resize_frames(frame.image[None], size) for _, frame in batch])  # [B, H, W, 3]
        audio = np.stack([w.samples for w in windows])  # [B, S]
        return frames, audio

    def _infer(self, batch: list[tuple[Stream, VideoFrame]], windows: list[AudioWindow]) -> list[np.ndarray | None]:
        """Logits [K, h, w] per frame, None for a frame the engine failed on (see the module doc)."""
        frames, audio = self._inputs(batch, windows)
        try:
            logits = self.engine.infer(frames, audio)  # [B, K, h, w]
        except Exception as error:
            with self._fault_lock:
                self.failed_batches += 1
            log.warning("the engine failed on a batch of %d frame(s) (%s: %s); retrying them one by one",
                        len(batch), type(error).__name__, error)
            return self._retry_alone(batch, frames, audio, error)
        with self._fault_lock:
            for stream, _ in batch:
                self._failures_in_a_row[stream.stream_id] = 0
        return list(logits)

    def _retry_alone(
        self,
        batch: list[tuple[Stream, VideoFrame]],
        frames: np.ndarray,
        audio: np.ndarray,
        batch_error: Exception,
    ) -> list[np.ndarray | None]:
        results: list[np.ndarray | None] = []
        for i, (stream, _frame) in enumerate(batch):
            error: Exception = batch_error
            if len(batch) > 1:  # a batch of one was this frame alone already
                try:
                    results.append(self.engine.infer(frames[i : i + 1], audio[i : i + 1])[0])
                    with self._fault_lock:
                        self._failures_in_a_row[stream.stream_id] = 0
                    continue
                except Exception as alone_error:  # noqa: BLE001 - counted and judged below
                    error = alone_error
            results.append(None)
            stream.counters.record_engine_failure()
            with self._fault_lock:
                now = time.monotonic()
                if self._failures_in_a_row[stream.stream_id] == 0:
                    self._streak_began[stream.stream_id] = now
                self._last_failure[stream.stream_id] = now
                self._failures_in_a_row[stream.stream_id] += 1
                if self._failures_in_a_row[stream.stream_id] >= FAULT_AFTER:
                    self._judge(stream, error)
        return results

    def _prepare_engine(self) -> None:
        """Let the engine compile for every batch size this scheduler can form before the first frame."""
        prepare = getattr(self.engine, "prepare", None)  # test doubles and wrappers may lack it
        if prepare is None:
            return
        largest = max(1, min(self.config.max_batch, len(self.streams)))
        try:
            prepare(largest)
        except Exception as error:  # noqa: BLE001 - the first real call will meet it and be judged
            log.warning("the engine could not prepare batches up to %d: %s", largest, error)

    def _judge(self, stream: Stream, error: Exception) -> None:
        """A stream's frames failed FAULT_AFTER times in a row: is it the stream or the engine?
        (Called with `_fault_lock` held.)"""
        failures = self._failures_in_a_row[stream.stream_id]
        h, w = self.spec.input_size
        try:
            self.engine.infer(np.zeros((1, h, w, 3), np.uint8), np.zeros((1, self.spec.window_samples), np.float32))
        except Exception as probe_error:
            raise EngineFailed(
                f"the {self.spec.backend} engine keeps failing: {failures} calls in a row on stream "
                f"{stream.stream_id}'s frames, then on a blank test input ({type(probe_error).__name__}: "
                f"{probe_error}); stopping. Check the model and backend, then restart"
            ) from None
        began = self._streak_began[stream.stream_id]
        others = [other.stream_id for other in self._live_streams()
                  if other is not stream and self._failures_in_a_row[other.stream_id]
                  and self._last_failure.get(other.stream_id, 0.0) >= began]
        if others:  # the engine failed for several streams and works again: a passing engine fault
            log.warning("the engine failed on several streams (%s) and works again; carrying on",
                        ", ".join([stream.stream_id, *others]))
            for sid in self._failures_in_a_row:
                self._failures_in_a_row[sid] = 0
            return
        stream.fault = (f"the engine failed on {failures} frames of this stream in a row but works on other "
                        f"input ({type(error).__name__}: {error}); the stream is stopped")
        log.error("stream %s: %s", stream.stream_id, stream.fault)

    # ------------------------------------------------------------------------------ publish
    def _publish(
        self,
        stream: Stream,
        frame: VideoFrame,
        window: AudioWindow,
        logits: np.ndarray,
        t_infer: float,
        infer_ms: float,
    ) -> None:
        """One frame: post-process, score, overlay, header, encode and send, then record."""
        t_post = time.time()
        result = self._postprocess(frame, logits)
        truth = self._score(stream, frame, logits)
        overlay = self._overlay(frame, result)
        self._record_audio(stream, window)
        header = self._header(stream, frame, window, result, truth, t_infer, infer_ms, t_post)
        parts = encode_message(header, result.mask, overlay)  # [topic, header JSON, mask PNG, overlay]
        self._send(stream, parts)
        capture_to_sent_ms = max(0.0, (time.time() - frame.wall_time) * 1000.0)  # after the send returned
        stream.counters.record_sent(capture_to_sent_ms, infer_ms)
        self._notify(self.on_sent, stream.stream_id, capture_to_sent_ms)
        self._notify(self.on_published, stream.stream_id, header, parts[2], overlay)

    def _postprocess(self, frame: VideoFrame, logits: np.ndarray) -> FrameResult:
        height, width = frame.image.shape[:2]
        return logits_to_result(logits, (height, width), self.spec.class_names, self.config.mask_threshold)

    def _score(self, stream: Stream, frame: VideoFrame, logits: np.ndarray) -> dict[str, float] | None:
        """Live J/F against a synthetic source's ground truth (None for real sources)."""
        if frame.ground_truth is None:
            return None
        j, f = live_accuracy(logits, frame.ground_truth)
        stream.counters.record_truth(j, f)
        return {"j": j} if f is None else {"j": j, "f": f}

    def _overlay(self, frame: VideoFrame, result: FrameResult) -> bytes | None:
        if not self.config.overlay:
            return None
        return encode_jpeg(render_overlay(frame.image, result.mask), self.config.jpeg_quality)

    def _record_audio(self, stream: Stream, window: AudioWindow) -> None:
        """Count this frame's window before its header is built, so the header includes it."""
        stream.counters.record_audio(
            silent=not stream.has_audio, warmup=window.warmup, incomplete=window.gap_samples > 0
        )

    def _header(
        self,
        stream: Stream,
        frame: VideoFrame,
        window: AudioWindow,
        result: FrameResult,
        truth: dict[str, float] | None,
        t_infer: float,
        infer_ms: float,
        t_post: float,
    ) -> FrameHeader:
        now = time.time()
        counters = stream.counters
        return FrameHeader(
            stream_id=stream.stream_id,
            epoch=self.epoch,
            seq=stream.next_seq(),
            frame_time=frame.time,
            capture_wall_time=frame.wall_time,
            audio_window=AudioWindowInfo(
                start=window.start, end=window.end, gap_fraction=window.gap_fraction, complete=window.complete
            ),
            latency=Latency(
                capture_to_infer_ms=max(0.0, (t_infer - frame.wall_time) * 1000.0),
                infer_ms=infer_ms,
                postprocess_ms=max(0.0, (now - t_post) * 1000.0),
                capture_to_publish_ms=max(0.0, (now - frame.wall_time) * 1000.0),
            ),
            model_id=self.spec.model_id,
            mask=MaskInfo(height=result.mask.shape[0], width=result.mask.shape[1], encoding=result.encoding,
                          num_classes=result.num_classes),
            classes=result.classes,
            drops=Drops(
                frames_dropped=stream.frames_dropped,
                publisher_dropped=self.publisher_dropped[stream.stream_id],
                engine_failed=counters.engine_failed_frames,
            ),
            audio=AudioHealth(
                warmup_windows=counters.audio_warmup_windows,
                incomplete_windows=counters.audio_incomplete_windows,
                ring_gaps=stream.ring.gaps,
                mic_overflows=stream.mic_overflows(),
            ),
            silent_audio=not stream.has_audio,
            ground_truth=truth,
        )

    def _send(self, stream: Stream, parts: list[bytes]) -> None:
        assert self.publisher is not None, "the publisher is opened by serve() on this thread"
        if not self.publisher.send(parts):
            self.publisher_dropped[stream.stream_id] += 1

    def _notify(self, observers: list[Callable[..., None]], *args: object) -> None:
        for observer in observers:
            try:
                observer(*args)
            except Exception:  # an observer's failure must not stop the pipeline
                log.exception("observer %r failed", observer)

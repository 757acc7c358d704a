"""The scheduler: newest frame of each stream -> one batch -> one engine -> publish.

One thread runs `Scheduler.run`. Each round it waits for a frame on any stream, then up to
`batch_deadline_ms` for the other streams to offer theirs (so streams are batched together when
they arrive close in time), takes the newest pending frame of each stream (at most `max_batch`,
round-robin across rounds so no stream starves), waits a bounded time (`audio_wait_ms`) for audio
that has not yet arrived for those frames, cuts each frame's 1-second window, runs the engine once
for the batch, and publishes one message per frame. A failure while publishing or post-processing
one frame is logged and counted; it never stops the other streams.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from ddavs_rt.capture.types import VideoFrame
from ddavs_rt.config import RuntimeConfig
from ddavs_rt.engine.base import Engine
from ddavs_rt.publish.overlay import encode_jpeg, render_overlay
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.publish.schema import AudioWindowInfo, Drops, FrameHeader, Latency, MaskInfo, encode_message
from ddavs_rt.runtime.postprocess import live_accuracy, logits_to_result
from ddavs_rt.runtime.stream import Stream
from ddavs_rt.sync import AudioWindow

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        streams: list[Stream],
        engine: Engine,
        publisher: Publisher,
        config: RuntimeConfig,
        wakeup: threading.Event,
    ) -> None:
        self.streams = streams
        self.engine = engine
        self.publisher = publisher
        self.config = config
        self.wakeup = wakeup
        self.spec = engine.spec
        self.window_s = self.spec.window_samples / self.spec.sample_rate
        self.batches = 0
        self.batch_sizes: list[int] = []
        self.errors = 0
        self.publisher_dropped: dict[str, int] = {s.stream_id: 0 for s in streams}
        self._start = 0
        self.epoch = 0  # the header's restart counter; a cluster shard sets it before running
        # Observers (metrics, recorder), called on the scheduler thread; they must not block.
        self.on_batch: list[Callable[[int, float], None]] = []  # (batch size, inference ms)
        # (stream id, header, mask PNG, overlay JPEG or None), after each frame is sent
        self.on_published: list[Callable[[str, FrameHeader, bytes, bytes | None], None]] = []

    # ------------------------------------------------------------------------------ loop
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self.wakeup.wait(0.1):
                continue
            self.wakeup.clear()
            deadline = time.monotonic() + self.config.batch_deadline_ms / 1000.0
            while time.monotonic() < deadline and not all(s.has_pending() for s in self.streams):
                time.sleep(0.0005)
            self.step()
            if any(s.has_pending() for s in self.streams):
                self.wakeup.set()

    def step(self) -> int:
        """Serve one batch; returns the number of frames processed."""
        order = self.streams[self._start :] + self.streams[: self._start]
        self._start = (self._start + 1) % max(1, len(self.streams))
        batch: list[tuple[Stream, VideoFrame]] = []
        for stream in order:
            if len(batch) >= self.config.max_batch:
                break
            frame = stream.take()
            if frame is not None:
                batch.append((stream, frame))
        if not batch:
            return 0
        windows = self._audio_windows(batch)
        t_infer = time.time()
        frames = np.stack([self._fit(frame.image) for _, frame in batch])  # [B, H, W, 3]
        audio = np.stack([w.samples for w in windows])  # [B, S]
        logits = self.engine.infer(frames, audio)  # [B, K, h, w]
        infer_ms = (time.time() - t_infer) * 1000.0
        self.batches += 1
        self.batch_sizes.append(len(batch))
        if len(self.batch_sizes) > 10000:
            del self.batch_sizes[:5000]
        self._notify(self.on_batch, len(batch), infer_ms)
        for (stream, frame), window, frame_logits in zip(batch, windows, logits):
            try:
                self._publish(stream, frame, window, frame_logits, t_infer, infer_ms)
            except Exception:  # one frame's failure must not stop the others
                self.errors += 1
                log.exception("stream %s: publishing frame %d failed", stream.stream_id, frame.index)
        return len(batch)

    # ------------------------------------------------------------------------------ parts
    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Frames of different streams may differ in size; the batch takes the engine's size."""
        h, w = self.spec.input_size
        if image.shape[:2] == (h, w):
            return image
        import cv2

        interpolation = cv2.INTER_AREA if image.shape[0] > h else cv2.INTER_LINEAR
        return cv2.resize(image, (w, h), interpolation=interpolation)

    def _audio_windows(self, batch: list[tuple[Stream, VideoFrame]]) -> list[AudioWindow]:
        offset = self.config.audio_offset_s
        give_up = time.monotonic() + self.config.audio_wait_ms / 1000.0
        for stream, frame in batch:
            if not stream.has_audio:
                continue
            while not stream.ring.ready(frame.time, offset) and time.monotonic() < give_up:
                time.sleep(0.001)
        return [stream.ring.window(frame.time, self.window_s, offset) for stream, frame in batch]

    def _publish(
        self,
        stream: Stream,
        frame: VideoFrame,
        window: AudioWindow,
        logits: np.ndarray,
        t_infer: float,
        infer_ms: float,
    ) -> None:
        t_post = time.time()
        height, width = frame.image.shape[:2]
        result = logits_to_result(logits, (height, width), self.spec.class_names, self.config.mask_threshold)
        truth = None
        if frame.ground_truth is not None:
            j, f = live_accuracy(logits, frame.ground_truth)
            stream.counters.record_truth(j, f)
            truth = {"j": j} if f is None else {"j": j, "f": f}
        overlay = (
            encode_jpeg(render_overlay(frame.image, result.mask), self.config.jpeg_quality)
            if self.config.overlay
            else None
        )
        silent = not stream.has_audio
        header = FrameHeader(
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
                publish_ms=0.0,
                total_ms=0.0,
            ),
            model_id=self.spec.model_id,
            mask=MaskInfo(height=height, width=width, encoding=result.encoding, num_classes=result.num_classes),
            classes=result.classes,
            drops=Drops(
                frames_dropped=stream.frames_dropped,
                audio_gaps=stream.counters.audio_gaps,
                publisher_dropped=self.publisher_dropped[stream.stream_id],
            ),
            silent_audio=silent,
            ground_truth=truth,
        )
        now = time.time()
        header.latency.publish_ms = (now - t_post) * 1000.0
        header.latency.total_ms = max(0.0, (now - frame.wall_time) * 1000.0)
        parts = encode_message(header, result.mask, overlay)  # [topic, header JSON, mask PNG, overlay]
        if not self.publisher.send(parts):
            self.publisher_dropped[stream.stream_id] += 1
        stream.counters.record(header.latency.total_ms, infer_ms, window.complete, silent)
        self._notify(self.on_published, stream.stream_id, header, parts[2], overlay)

    def _notify(self, observers: list[Callable[..., None]], *args: object) -> None:
        for observer in observers:
            try:
                observer(*args)
            except Exception:  # an observer's failure must not stop the pipeline
                log.exception("observer %r failed", observer)

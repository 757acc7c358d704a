"""The source interface: a thread reads a camera, microphone, stream or file and hands out
timestamped `VideoFrame`s and `AudioChunk`s.

Hand-off is through bounded queues (or callbacks, called on the reader thread). Nothing is
queued without bound: when the consumer is slower than the source, the oldest video frames are
dropped and counted (the freshest frame is what a live pipeline wants); a full audio queue also
drops its oldest chunk and counts it (a gap the synchronizer zero-fills and flags).

Times are seconds on one clock per stream: monotonic seconds since `start()` for live devices,
PTS seconds for media. `wall_time` is Unix seconds at capture.

A subclass implements `describe()`, `_open()` (raise `SourceError` with a one-line message),
`_run()` (read until `self.stopping` or the end of the input) and `_close()`, and calls
`_emit_video` / `_emit_audio`. A failure inside the reader thread becomes the `error` state with
a one-line `SourceError` in `source.error` and its class in `source.fault` (capture/faults.py:
`TransientSourceError` is transient, any other `SourceError` permanent); it never escapes into
the consumer's thread. A transient fault is survived with `_reconnect(connect, reason)`, which
retries under the source's `ReconnectPolicy` and raises when the policy gives up.

Health decays: with no frame for `STALE_AFTER_S` (or three frame intervals, whichever is longer)
`video_fps` reads 0; the error of an outage clears when the source delivers again; `reconnects`
counts outages, not attempts.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from ddavs_rt.capture.faults import FaultClass, Outage, ReconnectPolicy, TransientSourceError, fault_class
from ddavs_rt.capture.types import AudioChunk, VideoFrame
from ddavs_rt.errors import SourceError

log = logging.getLogger(__name__)

STALE_AFTER_S = 1.0  # no frame for this long (at least three frame intervals): fps reads 0

T = TypeVar("T")


class SourceState(str, enum.Enum):
    IDLE = "idle"                  # created, not started
    RUNNING = "running"            # reading
    RECONNECTING = "reconnecting"  # a network source lost its input and is retrying
    FINISHED = "finished"          # the input ended (a file played through)
    STOPPED = "stopped"            # stop() was called
    ERROR = "error"                # failed; `error` says why


class DropOldestQueue(Generic[T]):
    """A bounded FIFO whose `put` never blocks: when full, the oldest item is dropped."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._ready = threading.Condition()

    def put(self, item: T) -> bool:
        """Append `item`; returns True when an old item had to be dropped to make room."""
        with self._ready:
            dropped = len(self._items) >= self.maxsize
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._ready.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to `timeout` seconds (None: forever); None on timeout."""
        with self._ready:
            if not self._ready.wait_for(lambda: len(self._items) > 0, timeout):
                return None
            return self._items.popleft()

    def drain(self) -> list[T]:
        """Every queued item, oldest first, without waiting."""
        with self._ready:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


class RateMeter:
    """Measured events per second over the last `window` timestamps (stream-clock seconds)."""

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=max(2, window))

    def add(self, t: float) -> None:
        self._times.append(t)

    @property
    def rate(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def rate_at(self, age_s: float | None) -> float:
        """The rate, or 0.0 when the last event is `age_s` old and that is stale for this rate."""
        rate = self.rate
        if age_s is None:
            return rate
        stale_after = max(STALE_AFTER_S, 3.0 / rate) if rate > 0 else STALE_AFTER_S
        return 0.0 if age_s > stale_after else rate

    def clear(self) -> None:
        self._times.clear()


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """A snapshot of a source's counters."""

    stream_id: str
    state: SourceState
    video_frames: int          # frames emitted
    video_dropped: int         # frames dropped because the consumer was slow
    video_fps: float           # measured from frame timestamps, not the nominal rate; 0 when stale
    audio_chunks: int
    audio_samples: int
    audio_dropped: int         # chunks dropped because the consumer was slow
    reconnects: int            # outages survived or being retried (not attempts)
    decode_errors: int         # packets or frames that failed to decode and were skipped
    last_frame_age_s: float | None  # monotonic seconds since the last frame, None before one
    error: str | None          # the current error, one line (cleared when frames flow again)
    fault: FaultClass | None = None  # the class of the fault that ended the source, else None


class Source(ABC):
    """Base class of every capture source; see the module docstring."""

    def __init__(
        self,
        stream_id: str,
        *,
        video_queue_size: int = 4,
        audio_queue_size: int = 256,
        on_video: Callable[[VideoFrame], None] | None = None,
        on_audio: Callable[[AudioChunk], None] | None = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        if not stream_id:
            raise SourceError("a source needs a non-empty stream_id; pass one such as 'cam0'")
        self.stream_id = stream_id
        self.video_queue: DropOldestQueue[VideoFrame] = DropOldestQueue(video_queue_size)
        self.audio_queue: DropOldestQueue[AudioChunk] = DropOldestQueue(audio_queue_size)
        self._on_video = on_video
        self._on_audio = on_audio
        self.has_audio = False
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state = SourceState.IDLE
        self._error: SourceError | None = None
        self._last_error: str | None = None
        self._t0 = 0.0
        self._fps = RateMeter()
        self._video_index = 0
        self._video_dropped = 0
        self._audio_chunks = 0
        self._audio_samples = 0
        self._audio_dropped = 0
        self.reconnects = 0
        self.decode_errors = 0
        self._last_frame_mono: float | None = None
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self._outage: Outage | None = None

    # ---------------------------------------------------------------- subclass hooks
    @abstractmethod
    def describe(self) -> str:
        """A short name for messages, with any credentials redacted ("camera 0", a URL)."""

    @abstractmethod
    def _open(self) -> None:
        """Open the device or input; raise SourceError (one line) when it cannot be opened."""

    @abstractmethod
    def _run(self) -> None:
        """Read and emit until `self.stopping` is set or the input ends (then return)."""

    def _close(self) -> None:
        """Release the device or input (called once, on the reader thread, when it ends)."""

    def _interrupt(self) -> None:
        """Wake a reader blocked in I/O so that it sees `stopping` (optional)."""

    def _reconnect_hint(self) -> str:
        """What to check when an outage outlasted its limit (the start of the give-up line's fix)."""
        return "check that it is up and reachable"

    def _delivered(self) -> bool:
        """Whether the source has ever delivered what it exists for (called under `_lock`): an
        outage before that is bounded by the policy's first-frame timeout."""
        return self._video_index > 0

    # ---------------------------------------------------------------- lifecycle
    def start(self, clock_origin: float | None = None) -> "Source":
        """Open the input (raising SourceError when it cannot be opened) and start reading.

        `clock_origin` (a `time.monotonic()` value) puts several live sources on one clock, as
        when a camera and a microphone form one stream; by default the clock starts now.
        """
        if self._thread is not None:
            raise RuntimeError(f"{self.describe()} was already started; create a new source to restart")
        self._t0 = time.monotonic() if clock_origin is None else clock_origin
        try:
            self._open()
        except SourceError as error:
            self._fail(error)
            raise
        self._set_state(SourceState.RUNNING)
        self._thread = threading.Thread(target=self._thread_main, name=f"source-{self.stream_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading and release the input; safe to call more than once."""
        self.stopping.set()
        self._interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: reader thread did not stop within %.1f s", self.describe(), timeout)
        with self._lock:
            if self._state in (SourceState.RUNNING, SourceState.RECONNECTING, SourceState.IDLE):
                self._state = SourceState.STOPPED

    def __enter__(self) -> "Source":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _thread_main(self) -> None:
        try:
            self._run()
            self._set_state(SourceState.STOPPED if self.stopping.is_set() else SourceState.FINISHED)
        except SourceError as error:
            self._fail(error)
        except Exception as error:  # a bug or an unexpected library error: contain it here
            log.exception("%s: reader failed", self.describe())
            self._fail(SourceError(f"{self.describe()} failed while reading: {type(error).__name__}: {error}"))
        finally:
            try:
                self._close()
            except Exception:
                log.exception("%s: close failed", self.describe())

    # ---------------------------------------------------------------- state
    @property
    def state(self) -> SourceState:
        with self._lock:
            return self._state

    @property
    def error(self) -> SourceError | None:
        """The error that put the source into the `error` state, else None."""
        with self._lock:
            return self._error

    @property
    def running(self) -> bool:
        return self.state in (SourceState.RUNNING, SourceState.RECONNECTING)

    def _set_state(self, state: SourceState) -> None:
        with self._lock:
            if self._state != SourceState.ERROR:
                self._state = state

    def _fail(self, error: SourceError) -> None:
        # Logged at debug only: the owner (the runtime, the CLI) reports a fault once.
        with self._lock:
            self._state = SourceState.ERROR
            self._error = error
            self._last_error = str(error)
        log.debug("%s failed (%s): %s", self.describe(), fault_class(error).value, error)

    @property
    def fault(self) -> FaultClass | None:
        """The class of the fault that put the source into the `error` state, else None."""
        error = self.error
        return None if error is None else fault_class(error)

    def _note_error(self, message: str) -> None:
        """Remember a recoverable error (a failed reconnect) for health(), without failing."""
        with self._lock:
            self._last_error = message

    def _reconnect(self, connect: Callable[[], None], reason: str, continuing: bool = False) -> bool:
        """Survive one outage: retry `connect()` with jittered backoff under the policy.

        Returns True once connected, False when the source is stopping. Raises the permanent
        `SourceError` that `connect` raised, or a `TransientSourceError` when the outage outlasted
        the policy's limit (or reconnecting is disabled). `continuing=True` goes on with the last
        outage (a connection that was lost again before delivering a frame is the same outage:
        its time limit still runs and `reconnects` does not count it twice).
        """
        policy = self.reconnect_policy
        with self._lock:
            delivered = self._delivered()
            new = not continuing or self._outage is None
            if new:
                self.reconnects += 1
            if self._state != SourceState.ERROR:
                self._state = SourceState.RECONNECTING
            self._last_error = reason
        if not policy.enabled:
            raise TransientSourceError(f"{reason}; reconnecting is disabled")
        if new:
            self._outage = Outage(policy, delivered)
            log.warning("%s; reconnecting (for at most %s)", reason, policy.describe_limit(delivered))
        outage = self._outage
        assert outage is not None
        last = reason
        while True:
            if self.stopping.is_set():  # stop() during an attempt: a stop, not a give-up (no fault)
                return False
            delay = outage.next_delay()
            if outage.expired(delay):
                name = self.describe()
                last = last[len(name):].strip() if last.startswith(name) else last
                raise TransientSourceError(
                    f"{name} gave up after {outage.elapsed():.0f} s of retrying "
                    f"(limit {policy.describe_limit(delivered)}; last: {last}); "
                    f"{self._reconnect_hint()}, or raise --reconnect-timeout (or pass --reconnect forever)"
                )
            if not self._sleep(delay):
                return False
            try:
                connect()
            except TransientSourceError as error:
                last = str(error)
                self._note_error(last)
                log.debug("%s: attempt %d failed: %s", self.describe(), outage.attempts, error)
                continue
            with self._lock:
                if self._state == SourceState.RECONNECTING:
                    self._state = SourceState.RUNNING
                self._last_error = None
            log.warning("%s: reconnected after %.1f s", self.describe(), outage.elapsed())
            return True

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the reader to end (a file played through); True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------- clock and counters
    def clock(self) -> float:
        """Monotonic seconds since start(): the stream clock of live devices."""
        return time.monotonic() - self._t0

    def _frame_age(self) -> float | None:
        return None if self._last_frame_mono is None else time.monotonic() - self._last_frame_mono

    @property
    def video_fps(self) -> float:
        """Frames per second measured from the last frames' timestamps (0.0 before two frames,
        and 0.0 once no frame has arrived for a while)."""
        with self._lock:
            return self._fps.rate_at(self._frame_age())

    def health(self) -> SourceHealth:
        with self._lock:
            age = self._frame_age()
            return SourceHealth(
                stream_id=self.stream_id, state=self._state, video_frames=self._video_index,
                video_dropped=self._video_dropped, video_fps=self._fps.rate_at(age),
                audio_chunks=self._audio_chunks, audio_samples=self._audio_samples,
                audio_dropped=self._audio_dropped, reconnects=self.reconnects,
                decode_errors=self.decode_errors, last_frame_age_s=age, error=self._last_error,
                fault=None if self._error is None else fault_class(self._error),
            )

    # ---------------------------------------------------------------- consumer side
    def get_video(self, timeout: float | None = None) -> VideoFrame | None:
        """The oldest queued frame, waiting up to `timeout` s; None on timeout."""
        return self.video_queue.get(timeout)

    def get_audio(self, timeout: float | None = None) -> AudioChunk | None:
        return self.audio_queue.get(timeout)

    def drain_audio(self) -> list[AudioChunk]:
        return self.audio_queue.drain()

    # ---------------------------------------------------------------- producer side
    def _emit_video(
        self,
        time_s: float,
        image: np.ndarray,
        *,
        wall_time: float | None = None,
        ground_truth: np.ndarray | None = None,
        semantic_truth: np.ndarray | None = None,
        extra: dict | None = None,
    ) -> VideoFrame:
        with self._lock:
            index = self._video_index
            self._video_index += 1
            now = time.monotonic()
            if self._last_frame_mono is not None and now - self._last_frame_mono > STALE_AFTER_S:
                self._fps.clear()  # a rate across an outage would be meaningless
            self._fps.add(time_s)
            self._last_frame_mono = now
            if self._error is None and self._last_error is not None:
                self._last_error = None  # frames flow again: the outage is over
        frame = VideoFrame(
            stream_id=self.stream_id, index=index, time=float(time_s),
            wall_time=time.time() if wall_time is None else wall_time, image=image,
            ground_truth=ground_truth, semantic_truth=semantic_truth, extra=extra or {},
        )
        if self._on_video is not None:
            self._on_video(frame)
        elif self.video_queue.put(frame):
            with self._lock:
                self._video_dropped += 1
        return frame

    def _emit_audio(self, time_s: float, samples: np.ndarray, sample_rate: int) -> AudioChunk | None:
        if len(samples) == 0:
            return None
        chunk = AudioChunk(
            stream_id=self.stream_id, time=float(time_s),
            samples=np.ascontiguousarray(samples, dtype=np.float32), sample_rate=int(sample_rate),
        )
        with self._lock:
            self._audio_chunks += 1
            self._audio_samples += len(chunk.samples)
        if self._on_audio is not None:
            self._on_audio(chunk)
        elif self.audio_queue.put(chunk):
            with self._lock:
                self._audio_dropped += 1
        return chunk

    def _sleep(self, seconds: float) -> bool:
        """Sleep, waking early on stop(); returns False when the source is stopping."""
        if seconds > 0:
            self.stopping.wait(seconds)
        return not self.stopping.is_set()

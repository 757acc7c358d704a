"""The runtime: sources -> streams -> scheduler -> engine -> publisher, started and stopped as one.

    runtime = Runtime(config, engine)       # engine from ddavs_rt.engine.open_engine
    runtime.start()                         # binds the publisher, opens every source (one-line
                                            # error if the bind fails or no source can open)
    result = runtime.run(stop_event, on_stats=...)  # serves until stop_event, duration or every
                                            # stream has ended; raises EngineFailed when the
                                            # engine keeps failing (exit code 3)
    runtime.close()                         # stops sources and the scheduler thread (idempotent)
    sys.exit(result.exit_code)

The publisher's ZeroMQ socket belongs to the scheduler thread: `start()` starts that thread, which
binds the socket, and waits for the bind; the thread closes the socket when it ends.

Supervision (docs/architecture.md, "Supervision"):
- A stream is alive while its video source is, its paired microphone (if any) has not failed,
  and the scheduler has not faulted it. A source survives transient faults by itself
  (capture/faults.py; a microphone too: capture/microphone.py); it ends when its input ends (a
  file), on a permanent fault, or when an outage outlasts its reconnect timeout. When a stream's
  video source ends, the stream ends and its other sources (a paired microphone) are stopped;
  when its microphone gives up, the stream ends and its video source is stopped (audio-visual
  segmentation without sound is not what was asked for: exit 1, not silent windows for ever).
  `run` returns when every stream has ended.
- A source that fails to open is reported (one log line) and the others go on; `start` raises a
  `SourceError` only when none could be opened.
- Each fault is logged once, at ERROR, when it is seen.

`run` returns a `RunResult` (also available as `runtime.result()` at any time, e.g. after
catching `EngineFailed`): `.streams` holds one `StreamEnd` per stream (`stream_id`, `outcome`
one of "running" / "finished" / "stopped" / "fault", `fault` a `FaultClass` ("permanent" /
"transient") or None, `error` the one-line message), `.engine_error` the message when the engine
failed, and `.exit_code`: 0 clean (a stop request, the duration, every file played through),
1 a source ended with a transient fault (an outage outlasted its reconnect timeout), 2 a source
ended with a permanent fault (bad input: a wrong path, a 404, a missing or corrupt file, no such
device; also a stream the scheduler faulted because its input alone makes the engine fail),
3 the engine failed. The highest applies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ddavs_rt.capture.base import SourceState
from ddavs_rt.capture.faults import FaultClass
from ddavs_rt.config import RuntimeConfig
from ddavs_rt.engine.base import Engine
from ddavs_rt.errors import DdavsError, EngineFailed, SourceError
from ddavs_rt.publish.publisher import Publisher
from ddavs_rt.runtime.health import StreamHealthSnapshot
from ddavs_rt.runtime.scheduler import Scheduler
from ddavs_rt.runtime.sources import build_stream, start_stream
from ddavs_rt.runtime.stream import Stream

if TYPE_CHECKING:
    from ddavs_rt.runtime.metrics import RuntimeMetrics
    from ddavs_rt.runtime.recorder import Recorder

log = logging.getLogger(__name__)

_ENDED = (SourceState.FINISHED, SourceState.ERROR, SourceState.STOPPED)

EXIT_OK = 0
EXIT_TRANSIENT_FAULT = 1
EXIT_BAD_INPUT = 2  # also what the CLI returns for a DdavsError before anything runs
EXIT_ENGINE_FAILED = 3


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """How one stream ended (or that it was still running when the runtime stopped)."""

    stream_id: str
    outcome: Literal["running", "finished", "stopped", "fault"]
    fault: FaultClass | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What `Runtime.run` returns; see the module docstring for the exit codes."""

    streams: list[StreamEnd] = field(default_factory=list)
    engine_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.engine_error is not None:
            return EXIT_ENGINE_FAILED
        faults = {s.fault for s in self.streams if s.outcome == "fault"}
        if FaultClass.PERMANENT in faults:
            return EXIT_BAD_INPUT
        if FaultClass.TRANSIENT in faults:
            return EXIT_TRANSIENT_FAULT
        return EXIT_OK


class Runtime:
    def __init__(
        self, config: RuntimeConfig, engine: Engine, open_publisher: Callable[[], Publisher] | None = None
    ) -> None:
        if not config.sources:
            raise DdavsError("no sources configured; pass --demo, --camera, --rtsp or --file")
        self.config = config
        self.engine = engine
        self.wakeup = threading.Event()
        spec = engine.spec
        self.streams: list[Stream] = [
            build_stream(source, spec.sample_rate, config.audio_buffer_s, self.wakeup, config.reconnect_timeout_s)
            for source in config.sources
        ]
        if open_publisher is None:
            from ddavs_rt.publish.keys import open_publisher as open_configured

            def open_publisher() -> Publisher:
                return open_configured(config.publish, send_hwm=config.send_hwm, curve_keys=config.curve_keys)

        self.scheduler = Scheduler(self.streams, engine, open_publisher, config, self.wakeup)
        self._stop_scheduler = threading.Event()
        self._scheduler_failure: list[BaseException] = []
        self._worker: threading.Thread | None = None
        self.metrics: RuntimeMetrics | None = None
        self.recorder: Recorder | None = None
        if config.metrics is not None:
            from ddavs_rt.runtime.metrics import RuntimeMetrics, parse_host_port

            self._metrics_address = parse_host_port(config.metrics)  # a bad value fails before anything starts
            self.metrics = RuntimeMetrics(self.streams, self.scheduler)
            self.metrics.attach()
        self.started_at = 0.0
        self._closed = False
        self._reported: set[int] = set()  # id() of sources (and streams) whose fault was logged
        self._ended: set[str] = set()  # streams seen to end

    @property
    def endpoint(self) -> str | None:
        """The bound ZeroMQ endpoint (after start())."""
        publisher = self.scheduler.publisher
        return None if publisher is None else publisher.endpoint

    def _start_scheduler(self) -> None:
        """Start the scheduler thread; it binds the publisher. Raises the bind's error here."""
        opened = threading.Event()
        self._worker = threading.Thread(
            target=self.scheduler.serve, args=(self._stop_scheduler, opened, self._scheduler_failure),
            name="scheduler", daemon=True,
        )
        self._worker.start()
        opened.wait()
        if self._scheduler_failure:
            self._worker.join()
            raise self._scheduler_failure[0]

    def start(self) -> None:
        try:
            self._start_scheduler()
        except BaseException:
            self.close()
            raise
        failures: list[str] = []
        for stream in self.streams:
            try:
                start_stream(stream)
            except SourceError as error:
                failures.append(str(error))
                self._reported.update(id(source) for source in stream.sources)
                if len(self.streams) > 1:
                    log.error("stream %s: %s", stream.stream_id, error)
        if len(failures) == len(self.streams):
            self.close()
            # the caller prints this one line (the streams' own lines were logged only if several)
            raise SourceError(failures[0] if len(failures) == 1 else "; ".join(failures))
        try:
            if self.metrics is not None:
                self.metrics.serve(*self._metrics_address)
            if self.config.record is not None:
                from ddavs_rt.runtime.recorder import Recorder

                self.recorder = Recorder(self.config.record, self.config.record_rotate_mb, self.config.record_rotate_s)
                self.scheduler.on_published.append(self.recorder.on_published)
        except BaseException:
            self.close()
            raise
        self.started_at = time.monotonic()

    def run(
        self,
        stop: threading.Event,
        on_stats: Callable[[list[StreamHealthSnapshot]], None] | None = None,
    ) -> RunResult:
        """Serve until `stop` is set, `duration_s` has passed, or every stream has ended.

        Returns how each stream ended. Raises `EngineFailed` (after stopping) when the scheduler
        ended because the engine failed.
        """
        worker = self._worker
        if worker is None:
            raise RuntimeError("Runtime.run() before start()")
        next_stats = time.monotonic() + self.config.stats_interval_s
        try:
            while not stop.is_set():
                stop.wait(0.1)
                now = time.monotonic()
                if not worker.is_alive():  # the engine failed (the error is raised below)
                    break
                self._supervise()
                if self.config.duration_s is not None and now - self.started_at >= self.config.duration_s:
                    break
                if self._all_ended():
                    # let the scheduler serve what is pending, then stop
                    time.sleep(0.2)
                    break
                if on_stats is not None and now >= next_stats:
                    next_stats = now + self.config.stats_interval_s
                    on_stats(self.health())
        finally:
            stop.set()
            self._stop_worker()
        if self._scheduler_failure:
            failure = self._scheduler_failure[0]
            if isinstance(failure, EngineFailed):
                raise failure
            log.error("the scheduler failed", exc_info=failure)
            raise EngineFailed(f"the scheduler failed ({type(failure).__name__}: {failure}); stopping") from failure
        self._supervise()
        return self.result()

    def _stop_worker(self) -> None:
        """Stop the scheduler thread; it closes the publisher's socket itself, on its own thread."""
        worker = self._worker
        self._stop_scheduler.set()
        if worker is not None and worker.is_alive():
            worker.join(timeout=10.0)
            if worker.is_alive():  # stuck in the engine: its socket is left to it, never touched here
                log.warning("the scheduler thread did not stop within 10 s; leaving it to the process exit")

    @staticmethod
    def _audio_failed(stream: Stream) -> bool:
        """A paired microphone that ended with a fault (it gave up reconnecting, or never opened)."""
        return any(s.state == SourceState.ERROR for s in stream.sources if s is not stream.video_source)

    @classmethod
    def _stream_ended(cls, stream: Stream) -> bool:
        video = stream.video_source
        return stream.fault is not None or video is None or video.state in _ENDED or cls._audio_failed(stream)

    def _all_ended(self) -> bool:
        return all(
            stream.fault is not None or (self._stream_ended(stream) and not stream.has_pending())
            for stream in self.streams
        )

    def _supervise(self) -> None:
        """Log each fault once; a stream whose video source ended (or that the scheduler faulted)
        ends: its other sources (a paired microphone) are stopped."""
        for stream in self.streams:
            for source in stream.sources:
                if source.state == SourceState.ERROR and id(source) not in self._reported:
                    self._reported.add(id(source))
                    fault = source.fault.value if source.fault else "?"
                    log.error("stream %s: %s (%s fault)", stream.stream_id, source.error, fault)
            if not self._stream_ended(stream) or stream.stream_id in self._ended:
                continue
            self._ended.add(stream.stream_id)
            stop_video = stream.fault is not None or self._audio_failed(stream)
            for source in stream.sources:
                if source.state not in _ENDED and (source is not stream.video_source or stop_video):
                    source.stop()
            log.info("stream %s ended: %s", stream.stream_id, self._stream_end(stream).outcome)

    @staticmethod
    def _stream_end(stream: Stream) -> StreamEnd:
        if stream.fault is not None:  # the scheduler faulted it: its input alone breaks the engine
            return StreamEnd(stream.stream_id, "fault", FaultClass.PERMANENT, stream.fault)
        video = stream.video_source
        if video is None:
            return StreamEnd(stream.stream_id, "stopped")
        # the video source's fault, else that of another source (a microphone that failed)
        failed = next((s for s in [video, *stream.sources] if s.state == SourceState.ERROR), None)
        if failed is not None:
            error = failed.error
            return StreamEnd(stream.stream_id, "fault", failed.fault, str(error) if error is not None else None)
        state = video.state
        if state == SourceState.FINISHED:
            return StreamEnd(stream.stream_id, "finished")
        if state == SourceState.STOPPED:
            return StreamEnd(stream.stream_id, "stopped")
        return StreamEnd(stream.stream_id, "running")

    def result(self) -> RunResult:
        """How each stream ended so far, and the engine's failure if any."""
        failure = self._scheduler_failure[0] if self._scheduler_failure else None
        return RunResult([self._stream_end(stream) for stream in self.streams],
                         None if failure is None else str(failure))

    def health(self) -> list[StreamHealthSnapshot]:
        return [s.health(self.scheduler.publisher_dropped[s.stream_id]) for s in self.streams]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_worker()  # first: nothing more is published, the socket is closed by its thread
        for stream in self.streams:
            for source in stream.sources:
                try:
                    source.stop()
                except Exception:
                    log.exception("stream %s: stopping a source failed", stream.stream_id)
        if self.recorder is not None:
            self.recorder.close()  # the scheduler thread has stopped: nothing more is queued
        if self.metrics is not None:
            self.metrics.close()
        self.engine.close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

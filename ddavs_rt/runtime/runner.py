"""The runtime: sources -> streams -> scheduler -> engine -> publisher, started and stopped as one.

    runtime = Runtime(config, engine)       # engine from ddavs_rt.engine.open_engine
    runtime.start()                         # opens every source (one-line SourceError if none can)
    runtime.run(stop_event, on_stats=...)   # serves until stop_event, duration or all sources end
    runtime.close()                         # stops sources, closes the socket (idempotent)

A source that fails to open is reported; the runtime goes on with the others, and exits with an
error only when none could be opened. Network sources reconnect by themselves (capture/media.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ddavs_rt.capture.base import SourceState
from ddavs_rt.config import RuntimeConfig
from ddavs_rt.engine.base import Engine
from ddavs_rt.errors import DdavsError, SourceError
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


class Runtime:
    def __init__(self, config: RuntimeConfig, engine: Engine, publisher: Publisher | None = None) -> None:
        if not config.sources:
            raise DdavsError("no sources configured; pass --demo, --camera, --rtsp or --file")
        self.config = config
        self.engine = engine
        self.wakeup = threading.Event()
        spec = engine.spec
        self.streams: list[Stream] = [
            build_stream(source, spec.sample_rate, config.audio_buffer_s, self.wakeup) for source in config.sources
        ]
        if publisher is None:
            from ddavs_rt.publish.keys import open_publisher

            publisher = open_publisher(config.publish, send_hwm=config.send_hwm, curve_keys=config.curve_keys)
        self.publisher = publisher
        self.scheduler = Scheduler(self.streams, engine, self.publisher, config, self.wakeup)
        self.metrics: RuntimeMetrics | None = None
        self.recorder: Recorder | None = None
        if config.metrics is not None:
            from ddavs_rt.runtime.metrics import RuntimeMetrics, parse_host_port

            self._metrics_address = parse_host_port(config.metrics)  # a bad value fails before anything starts
            self.metrics = RuntimeMetrics(self.streams, self.scheduler)
            self.metrics.attach()
        self.started_at = 0.0
        self._closed = False

    def start(self) -> None:
        failures: list[str] = []
        for stream in self.streams:
            try:
                start_stream(stream)
            except SourceError as error:
                failures.append(str(error))
                log.error("stream %s: %s", stream.stream_id, error)
        if len(failures) == len(self.streams):
            self.close()
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
    ) -> None:
        """Serve until `stop` is set, `duration_s` has passed, or every source has ended."""
        worker = threading.Thread(target=self._serve, args=(stop,), name="scheduler", daemon=True)
        worker.start()
        next_stats = time.monotonic() + self.config.stats_interval_s
        try:
            while not stop.is_set():
                stop.wait(0.1)
                now = time.monotonic()
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
            worker.join(timeout=10.0)

    def _serve(self, stop: threading.Event) -> None:
        try:
            self.scheduler.run(stop)
        except Exception:
            log.exception("the scheduler failed; stopping")
            stop.set()

    def _all_ended(self) -> bool:
        return all(
            all(source.state in _ENDED for source in stream.sources) and not stream.has_pending()
            for stream in self.streams
        )

    def health(self) -> list[StreamHealthSnapshot]:
        return [s.health(self.scheduler.publisher_dropped[s.stream_id]) for s in self.streams]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
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
        self.publisher.close()
        self.engine.close()

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

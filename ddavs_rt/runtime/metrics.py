"""The runtime's Prometheus endpoint (`--metrics 127.0.0.1:9100`), on its own registry.

Per stream (label `stream`, the stream id, never a source location):
    ddavs_frames_processed_total, ddavs_frames_dropped_total, ddavs_publisher_dropped_total,
    ddavs_engine_failed_frames_total, ddavs_stream_faulted (1 once the engine's failures on the
    stream's input stopped it),
    ddavs_audio_warmup_windows_total (windows reaching back before the stream's first audio:
    expected at the start), ddavs_audio_incomplete_windows_total (audio missing after it began),
    ddavs_audio_ring_gaps_total (discontinuities in the audio), ddavs_microphone_overflows_total
    (PortAudio input overflows), ddavs_silent_windows_total, ddavs_reconnects_total,
    ddavs_source_state{state=...} (1 for the video source's current state),
    ddavs_microphone_state{state=...} (the same for a paired microphone; streams without one
    have no series: "reconnecting" during a microphone outage),
    ddavs_capture_to_sent_seconds (histogram: capture to the message's send having returned,
    observed after the send), ddavs_capture_to_infer_seconds.
For the engine: ddavs_batch_size and ddavs_inference_seconds (histograms, one sample per batch),
ddavs_engine_failed_batches_total.

Counters the runtime already keeps (processed, drops, gaps, reconnects) are read when scraped,
without side effects; histograms are fed by the scheduler's `on_batch` / `on_sent` /
`on_published` hooks. Prometheus histograms are cumulative over the whole run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ddavs_rt.capture.base import SourceState
from ddavs_rt.capture.urls import redact_url
from ddavs_rt.errors import DdavsError
from ddavs_rt.publish.schema import FrameHeader
from ddavs_rt.runtime.metrics_endpoint import MetricsEndpoint
from ddavs_rt.runtime.scheduler import Scheduler
from ddavs_rt.runtime.stream import Stream

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


def parse_host_port(text: str) -> tuple[str, int]:
    """'127.0.0.1:9100' -> ('127.0.0.1', 9100); ':9100' binds loopback; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise DdavsError(f"--metrics {text!r} is not HOST:PORT, e.g. 127.0.0.1:9100")
    return host.strip("[]") or "127.0.0.1", int(port)


def _label(stream_id: str) -> str:
    # Stream ids are config names, not locations; redacting anyway costs nothing.
    return redact_url(stream_id)


class _StreamCounters(Collector):
    """Reads the streams' own counters at scrape time."""

    def __init__(self, streams: list[Stream], scheduler: Scheduler) -> None:
        self.streams = streams
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        families = {
            "processed": CounterMetricFamily("ddavs_frames_processed", "frames segmented and published", labels=["stream"]),
            "dropped": CounterMetricFamily(
                "ddavs_frames_dropped", "frames replaced by a newer one before processing, or dropped by the source",
                labels=["stream"]),
            "publisher": CounterMetricFamily(
                "ddavs_publisher_dropped", "sends that found a subscriber queue full", labels=["stream"]),
            "warmup": CounterMetricFamily(
                "ddavs_audio_warmup_windows", "frames whose audio window reached back before the stream's first audio "
                "(expected during the first second)", labels=["stream"]),
            "incomplete": CounterMetricFamily(
                "ddavs_audio_incomplete_windows", "frames whose audio window missed audio after the stream's audio "
                "began (a discontinuity, or audio too late for its frame)", labels=["stream"]),
            "ring_gaps": CounterMetricFamily(
                "ddavs_audio_ring_gaps", "discontinuities in the stream's audio (AudioRing gaps)", labels=["stream"]),
            "overflows": CounterMetricFamily(
                "ddavs_microphone_overflows", "PortAudio input overflows of the stream's microphone", labels=["stream"]),
            "engine_failed": CounterMetricFamily(
                "ddavs_engine_failed_frames", "frames lost because the engine failed on them, even alone",
                labels=["stream"]),
            "silent": CounterMetricFamily("ddavs_silent_windows", "frames of a stream without audio", labels=["stream"]),
            "reconnects": CounterMetricFamily("ddavs_reconnects", "source reconnections", labels=["stream"]),
        }
        state = GaugeMetricFamily("ddavs_source_state", "1 for the stream's current source state",
                                  labels=["stream", "state"])
        mic_state = GaugeMetricFamily("ddavs_microphone_state", "1 for the current state of the stream's paired "
                                      "microphone (streams without one have no series)", labels=["stream", "state"])
        faulted = GaugeMetricFamily("ddavs_stream_faulted", "1 once the stream was stopped because the engine "
                                    "kept failing on its input", labels=["stream"])
        failed_batches = CounterMetricFamily("ddavs_engine_failed_batches", "engine calls that raised (each batch's "
                                             "first try; its frames are then retried one by one)")
        failed_batches.add_metric([], self.scheduler.failed_batches)
        for stream in self.streams:
            label = [_label(stream.stream_id)]
            sources = [source.health() for source in stream.sources]
            families["processed"].add_metric(label, stream.counters.processed)
            families["dropped"].add_metric(label, stream.frames_dropped + sum(h.video_dropped for h in sources))
            families["publisher"].add_metric(label, self.scheduler.publisher_dropped.get(stream.stream_id, 0))
            families["warmup"].add_metric(label, stream.counters.audio_warmup_windows)
            families["incomplete"].add_metric(label, stream.counters.audio_incomplete_windows)
            families["ring_gaps"].add_metric(label, stream.ring.gaps)
            families["overflows"].add_metric(label, stream.mic_overflows())
            families["engine_failed"].add_metric(label, stream.counters.engine_failed_frames)
            faulted.add_metric(label, 0.0 if stream.fault is None else 1.0)
            families["silent"].add_metric(label, stream.counters.silent_windows)
            families["reconnects"].add_metric(label, sum(h.reconnects for h in sources))
            current = sources[0].state if sources else None
            for value in SourceState:
                state.add_metric(label + [value.value], 1.0 if value == current else 0.0)
            mic = stream.audio_state()
            if mic is not None:
                for value in SourceState:
                    mic_state.add_metric(label + [value.value], 1.0 if value.value == mic else 0.0)
        yield from families.values()
        yield state
        yield mic_state
        yield faulted
        yield failed_batches


class RuntimeMetrics(MetricsEndpoint):
    """Metrics of one runtime: `attach()` hooks the scheduler, `serve(host, port)` starts HTTP."""

    def __init__(self, streams: list[Stream], scheduler: Scheduler) -> None:
        super().__init__(CollectorRegistry())
        self.registry.register(_StreamCounters(streams, scheduler))
        self.capture_to_sent = Histogram(
            "ddavs_capture_to_sent_seconds", "capture to the message's send having returned (observed after the "
            "send), per frame", ["stream"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.capture_to_infer = Histogram("ddavs_capture_to_infer_seconds", "capture to inference start, per frame",
                                          ["stream"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.batch_size = Histogram("ddavs_batch_size", "frames per engine call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.inference = Histogram("ddavs_inference_seconds", "engine time per batch", buckets=LATENCY_BUCKETS_S,
                                   registry=self.registry)
        self.scheduler = scheduler

    def attach(self) -> None:
        self.scheduler.on_batch.append(self.on_batch)
        self.scheduler.on_published.append(self.on_published)
        self.scheduler.on_sent.append(self.on_sent)

    def on_batch(self, size: int, infer_ms: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(infer_ms / 1000.0)

    def on_sent(self, stream_id: str, capture_to_sent_ms: float) -> None:
        self.capture_to_sent.labels(_label(stream_id)).observe(capture_to_sent_ms / 1000.0)

    def on_published(self, stream_id: str, header: FrameHeader, _mask_png: bytes, _overlay: bytes | None) -> None:
        self.capture_to_infer.labels(_label(stream_id)).observe(header.latency.capture_to_infer_ms / 1000.0)

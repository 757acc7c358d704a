"""Build capture sources from source configs and wire them into runtime streams."""

from __future__ import annotations

import threading
import time

from ddavs_rt.capture.base import Source
from ddavs_rt.config import CameraSourceConfig, MediaSourceConfig, SourceConfig, SyntheticSourceConfig
from ddavs_rt.runtime.stream import Stream


def build_stream(
    config: SourceConfig, sample_rate: int, audio_buffer_s: float, wakeup: threading.Event
) -> Stream:
    """A Stream with its (not yet started) sources, callbacks wired."""
    stream = Stream(config.id, sample_rate, audio_buffer_s, wakeup)
    callbacks = {"on_video": stream.on_video, "on_audio": stream.on_audio}
    if isinstance(config, CameraSourceConfig):
        from ddavs_rt.capture.camera import CameraSource

        camera = CameraSource(
            config.device, config.id, width=config.width, height=config.height, fps=config.fps, **callbacks
        )
        mic = None
        if config.mic is not None:
            from ddavs_rt.capture.microphone import MicrophoneSource

            mic = MicrophoneSource(_device(config.mic), f"{config.id}-mic", sample_rate=sample_rate, **callbacks)
        stream.attach(camera, mic)
    elif isinstance(config, MediaSourceConfig):
        from ddavs_rt.capture.media import MediaSource

        media = MediaSource(
            config.location,
            config.id,
            sample_rate=sample_rate,
            realtime=config.realtime,
            loop=config.loop,
            rtsp_transport=config.rtsp_transport,
            open_timeout=config.open_timeout_s,
            read_timeout=config.read_timeout_s,
            **callbacks,
        )
        stream.attach(media, media)
    elif isinstance(config, SyntheticSourceConfig):
        from ddavs_rt.capture.synthetic import SyntheticSource

        synthetic = SyntheticSource(
            seed=config.seed,
            stream_id=config.id,
            fps=config.fps,
            size=config.size,
            sample_rate=sample_rate,
            realtime=config.realtime,
            **callbacks,
        )
        stream.attach(synthetic, synthetic)
    else:  # pragma: no cover - the config union is closed
        raise TypeError(f"unknown source config {type(config).__name__}")
    return stream


def start_stream(stream: Stream) -> None:
    """Start a stream's sources on one clock (a camera and its microphone share the origin)."""
    origin = time.monotonic()
    started: list[Source] = []
    try:
        for source in stream.sources:
            source.start(clock_origin=origin)
            started.append(source)
    except BaseException:
        for source in started:
            source.stop()
        raise


def _device(value: int | str) -> int | str | None:
    if isinstance(value, str) and value.lower() == "default":
        return None
    return value

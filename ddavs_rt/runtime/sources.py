"""Build capture sources from source configs and wire them into runtime streams.

A stream has one video source and at most one audio source: the video source's own audio (a
file, an RTSP stream, the demo) or a microphone (`mic`) paired with a camera, file or RTSP
video. A paired microphone and its video share one clock: monotonic seconds since the stream
started, the video stamped when each frame arrives (media sources switch from PTS to arrival
stamps), the microphone by its sample clock (capture/microphone.py).
"""

from __future__ import annotations

import threading
import time

from ddavs_rt.capture.base import Source
from ddavs_rt.capture.faults import ReconnectPolicy
from ddavs_rt.config import CameraSourceConfig, MediaSourceConfig, SourceConfig, SyntheticSourceConfig
from ddavs_rt.runtime.stream import Stream


def reconnect_policy(config: SourceConfig, runtime_setting: float | str | None) -> ReconnectPolicy:
    """The source's policy: its own `reconnect_timeout_s`, else the runtime's, else the defaults."""
    own = getattr(config, "reconnect_timeout_s", None)
    return ReconnectPolicy.from_setting(own if own is not None else runtime_setting)


def build_stream(
    config: SourceConfig,
    sample_rate: int,
    audio_buffer_s: float,
    wakeup: threading.Event,
    reconnect_timeout: float | str | None = None,
) -> Stream:
    """A Stream with its (not yet started) sources, callbacks wired."""
    stream = Stream(config.id, sample_rate, audio_buffer_s, wakeup)
    callbacks = {"on_video": stream.on_video, "on_audio": stream.on_audio}
    if isinstance(config, CameraSourceConfig):
        from ddavs_rt.capture.camera import CameraSource

        camera = CameraSource(
            config.device, config.id, width=config.width, height=config.height, fps=config.fps,
            reconnect=reconnect_policy(config, reconnect_timeout), **callbacks,
        )
        stream.attach(camera, _microphone(config, sample_rate, callbacks, reconnect_timeout))
    elif isinstance(config, MediaSourceConfig):
        from ddavs_rt.capture.media import MediaSource

        paired = config.mic is not None
        media = MediaSource(
            config.location,
            config.id,
            sample_rate=sample_rate,
            audio=not paired,
            # a live microphone beside a file: the file plays at its recorded rate
            realtime=True if paired else config.realtime,
            stamp="arrival" if paired else "pts",
            loop=config.loop,
            rtsp_transport=config.rtsp_transport,
            open_timeout=config.open_timeout_s,
            read_timeout=config.read_timeout_s,
            reconnect=reconnect_policy(config, reconnect_timeout),
            **callbacks,
        )
        stream.attach(media, _microphone(config, sample_rate, callbacks, reconnect_timeout) if paired else media)
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


def _microphone(
    config: CameraSourceConfig | MediaSourceConfig, sample_rate: int, callbacks: dict,
    reconnect_timeout: float | str | None,
) -> Source | None:
    """The source's paired microphone (None without `mic`), under the same reconnect policy as its video."""
    if config.mic is None:
        return None
    from ddavs_rt.capture.microphone import MicrophoneSource

    return MicrophoneSource(_device(config.mic), f"{config.id}-mic", sample_rate=sample_rate,
                            reconnect=reconnect_policy(config, reconnect_timeout), **callbacks)


def start_stream(stream: Stream) -> None:
    """Start a stream's sources on one clock (a video source and its microphone share the origin)."""
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

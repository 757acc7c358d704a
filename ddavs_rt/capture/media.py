"""PyAV source for RTSP, HTTP(S) and files: decoded video and audio with PTS timestamps.

- Times are PTS seconds (`pts * time_base`). A frame without a PTS (the first frame of some RTSP
  streams) gets the previous frame's time + 1/fps, or 0.
- Audio is resampled to `sample_rate` mono float32 with `av.AudioResampler`; output timestamps
  are counted forward from the first input frame's time (a resampler is a delay line), re-anchored
  only at a discontinuity.
- The clock never runs backwards across a reconnect or a file loop: the new input's times are
  shifted to continue after the last emitted time (plus the time the reconnect took, or one frame
  for a loop). Audio and video of one connection share that shift, so their alignment is kept.
- Network inputs use RTSP over TCP by default, socket timeouts ("timeout"/"rw_timeout", in
  microseconds) and PyAV's open/read timeouts. Failures are classified (capture/faults.py):
  a 404, 401/403, malformed URL or unsupported protocol/codec ends the source at once; a refused,
  timed-out or lost connection (and the end of a live stream) is an outage retried with jittered
  backoff under the source's `ReconnectPolicy`. Every URL in a log line or error message is
  redacted (`redact_url`).
- `stamp="arrival"` stamps each video frame with the source's monotonic clock when it is
  decoded (as a camera stamps frames after `grab()`), instead of its PTS: the clock a paired
  microphone uses (the runtime's `--mic` with `--file`/`--rtsp`).
- Files: `realtime=True` paces frames at the recorded rate (replay); `loop=True` plays forever.
  A file that fails mid-way (a read error, packets that do not decode, video that stops well
  before the duration the file declares) ends the source with a permanent fault, not a clean end,
  with a message that says "corrupt" or "truncated" and what to do (never FFmpeg's errno name: its
  AAC decoder answers some corrupt packets with EPERM). An input with no video stream, or whose
  video (or used audio) stream's codec has no decoder in this FFmpeg build, is a permanent fault
  at open, naming what the input holds.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import av
import av.error
import numpy as np

from ddavs_rt.capture.base import Source
from ddavs_rt.capture.faults import FaultClass, ReconnectPolicy, TransientSourceError, classify_av_error
from ddavs_rt.capture.urls import is_network_url, redact_text, redact_url
from ddavs_rt.errors import SourceError

log = logging.getLogger(__name__)

DISCONTINUITY_S = 0.1  # an audio frame this far from where the previous one ended starts anew
RTSP_PROBE_S = 0.5  # stream analysis on opening an RTSP URL (FFmpeg's default is 5 s)
TRUNCATED_S = 1.0  # a file whose video ends this long before its declared duration was cut short


REPLACE_HINT = "replace it with a good copy, or re-encode what still plays (e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`)"


def _ffmpeg_version() -> str:
    info = getattr(av, "ffmpeg_version_info", None)
    return str(info) if info else "unknown version"


def _stream_label(stream) -> str:
    """'audio (aac)', 'data', 'video (unknown codec)' for messages."""
    context = stream.codec_context
    if stream.type in ("audio", "video"):
        return f"{stream.type} ({context.name if context is not None else 'unknown codec'})"
    return str(stream.type)


class MediaSource(Source):
    """Video (required) and audio (optional) from a file or an rtsp/http(s)/rtmp/srt URL."""

    def __init__(
        self,
        location: str | Path,
        stream_id: str = "media",
        *,
        sample_rate: int = 16000,
        audio: bool = True,
        realtime: bool | None = None,
        loop: bool = False,
        rtsp_transport: str = "tcp",
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        reconnect: bool | ReconnectPolicy = True,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
        stamp: str = "pts",
        **queue_options,
    ) -> None:
        policy = reconnect if isinstance(reconnect, ReconnectPolicy) else ReconnectPolicy(enabled=bool(reconnect))
        overrides = {k: v for k, v in (("backoff_initial_s", backoff_initial), ("backoff_max_s", backoff_max)) if v is not None}
        if overrides:
            from dataclasses import replace

            policy = replace(policy, **overrides)
        super().__init__(stream_id, reconnect=policy, **queue_options)
        if stamp not in ("pts", "arrival"):
            raise ValueError(f"stamp must be 'pts' or 'arrival', got {stamp!r}")
        self.stamp = stamp
        self.location = str(location)
        self.network = is_network_url(self.location)
        self.sample_rate = int(sample_rate)
        self.audio_enabled = audio
        self.realtime = (not self.network) if realtime is None else bool(realtime) and not self.network
        self.loop = loop and not self.network
        self.rtsp_transport = rtsp_transport
        self.open_timeout = float(open_timeout)
        self.read_timeout = float(read_timeout)
        self._startup_error: str | None = None
        self._declared_end: float | None = None
        self._container: av.container.InputContainer | None = None
        self._video_stream = None
        self._audio_stream = None
        self._nominal_fps = 25.0
        # Clock continuity across reconnects and loops.
        self._offset = 0.0
        self._rebase_pending = False
        self._rebase_gap = 0.0
        self._last_time: float | None = None   # last emitted video time (stream clock)
        self._last_emit_mono = 0.0
        self._prev_raw_video: float | None = None
        # Audio resampling state (per connection).
        self._resampler: av.AudioResampler | None = None
        self._audio_anchor: float | None = None
        self._audio_out = 0
        self._audio_in_end: float | None = None
        # Realtime pacing.
        self._pace: tuple[float, float] | None = None

    def describe(self) -> str:
        return redact_url(self.location) if self.network else f"file '{self.location}'"

    # ---------------------------------------------------------------- open / close
    def _open(self) -> None:
        if not self.network and not Path(self.location).is_file():
            what = "is a folder, not a media file" if Path(self.location).is_dir() else "does not exist"
            raise SourceError(f"media file '{self.location}' {what}; check the path")
        if not self.network and not os.access(self.location, os.R_OK):
            raise SourceError(f"{self.describe()} cannot be read: permission denied; check its permissions")
        if self.network:
            self._check_url()
        try:
            self._connect()
        except TransientSourceError as error:
            if not self.reconnect_policy.enabled:
                raise
            # A network source that is down at start-up is retried like a lost one (in _run).
            self._startup_error = str(error)

    def _check_url(self) -> None:
        """A URL without a host or with a bad port is a permanent fault (FFmpeg would call it
        'connection refused')."""
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(self.location)
            host, _port = parts.hostname, parts.port
        except ValueError as error:
            raise SourceError(f"{self.describe()} is not a valid URL ({error}); check its form, e.g. rtsp://host:554/path") from None
        if not host:
            raise SourceError(f"{self.describe()} has no host; check its form, e.g. rtsp://host:554/path")

    def _options(self) -> dict[str, str]:
        if not self.network:
            return {}
        microseconds = str(int(self.read_timeout * 1_000_000))
        scheme = self.location.split("://", 1)[0].lower()
        if scheme in ("rtsp", "rtsps"):
            # The SDP already describes the tracks; FFmpeg's default 5 s analysis would hold a
            # reconnect for 2-4 s before the first frame (measured on the test server).
            return {"rtsp_transport": self.rtsp_transport, "timeout": microseconds,
                    "analyzeduration": str(int(RTSP_PROBE_S * 1_000_000)), "probesize": "65536"}
        return {"rw_timeout": microseconds, "timeout": microseconds}

    def _connect(self) -> None:
        began = time.monotonic()
        try:
            container = av.open(
                self.location, mode="r", options=self._options(),
                timeout=(self.open_timeout, self.read_timeout),
            )
        except Exception as error:  # noqa: BLE001 - every failure becomes one SourceError line
            timed_out = time.monotonic() - began >= 0.9 * min(self.open_timeout, self.read_timeout)
            raise self._open_error(error, timed_out=self.network and timed_out) from None
        if self._startup_error is not None:
            self._startup_error = None
        try:
            self._check_decodable(container)
        except SourceError:
            container.close()
            raise
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        rate = video.average_rate or video.guessed_rate or video.base_rate
        self._nominal_fps = float(rate) if rate else 25.0
        audio = container.streams.audio[0] if (self.audio_enabled and container.streams.audio) else None
        self._container, self._video_stream, self._audio_stream = container, video, audio
        # Where the video should end (PTS seconds), to tell a truncated file from a whole one.
        if video.duration and video.time_base:
            start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
            self._declared_end = start + float(video.duration * video.time_base)
        elif container.duration:
            start = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            self._declared_end = start + container.duration / 1_000_000
        else:
            self._declared_end = None
        self.has_audio = audio is not None
        self._resampler = None
        self._audio_anchor = None
        self._audio_in_end = None
        self._prev_raw_video = None
        if self._last_time is not None:
            self._rebase_pending = True
        log.info(
            "%s: opened (video %dx%d ~%.2f fps%s)", self.describe(), video.codec_context.width,
            video.codec_context.height, self._nominal_fps,
            f", audio {audio.codec_context.sample_rate} Hz" if audio is not None else ", no audio",
        )

    def _check_decodable(self, container: av.container.InputContainer) -> None:
        """Permanent faults of the input's streams: no video stream at all, or a video (or used
        audio) stream whose codec this FFmpeg build cannot decode (PyAV gives it no codec context)."""
        name = self.describe()
        if not container.streams.video:
            held = ", ".join(_stream_label(s) for s in container.streams) or "no streams at all"
            raise SourceError(
                f"{name} has no video stream (it holds: {held}); ddavs-rt needs video (audio alone cannot be "
                "segmented); pass a file or stream with video"
            )
        if container.streams.video[0].codec_context is None:
            raise SourceError(
                f"{name}: its video stream's codec has no decoder in this FFmpeg build (FFmpeg {_ffmpeg_version()}) "
                "or the stream header is corrupt; re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4`"
            )
        if self.audio_enabled and container.streams.audio and container.streams.audio[0].codec_context is None:
            raise SourceError(
                f"{name}: its audio stream's codec has no decoder in this FFmpeg build (FFmpeg {_ffmpeg_version()}) "
                "or the stream header is corrupt; re-encode the audio, e.g. `ffmpeg -i IN -c:v copy -c:a aac OUT.mp4`"
            )

    def _open_error(self, error: Exception, timed_out: bool = False) -> SourceError:
        """One line for a failed open, of the fault class `classify_av_error` gives. FFmpeg
        reports a silent server variously (a timeout, an exit request, invalid data), so a
        network open that used up its timeout says so."""
        name = self.describe()
        detail = redact_text(getattr(error, "strerror", None) or str(error), self.location)
        transient = self.network and (timed_out or classify_av_error(error, self.network) is FaultClass.TRANSIENT)
        kind = TransientSourceError if transient else SourceError
        if timed_out:
            waited = min(self.open_timeout, self.read_timeout)
            return kind(f"{name} did not answer within {waited:g} s ({detail}); check the address and the network")
        if isinstance(error, (av.error.FileNotFoundError, av.error.HTTPNotFoundError)):
            hint = "the server has no such stream path; check the URL's path" if self.network else "check the path"
            return kind(f"{name} not found ({detail}); {hint}")
        if isinstance(error, av.error.ConnectionRefusedError):
            return kind(f"{name} refused the connection; check the host and port and that the server is running")
        if isinstance(error, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
            return kind(f"{name} rejected the request ({detail}); check the user name and password")
        if isinstance(error, av.error.HTTPClientError):
            return kind(f"{name} rejected the request ({detail}); check the URL")
        if isinstance(error, (av.error.ProtocolNotFoundError, av.error.ArgumentError, av.error.OptionNotFoundError)):
            return kind(f"{name} is not a URL this build can open ({detail}); check its form, e.g. rtsp://host:554/path")
        if isinstance(error, (av.error.DemuxerNotFoundError, av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
            return kind(f"{name} uses a format or codec this build cannot decode ({detail}); re-encode it (e.g. H.264)")
        if isinstance(error, (av.error.TimeoutError, av.error.ExitError, TimeoutError)):
            return kind(f"{name} did not answer within {self.open_timeout:g} s ({detail}); check the address and the network")
        if isinstance(error, av.error.InvalidDataError):
            return kind(f"{name} is not a readable media file or stream (corrupt, truncated or an unsupported format); "
                        "check that it plays in a media player")
        if not self.network:
            # FFmpeg's other refusals of a local file (an end of file inside the header, EPERM from
            # a demuxer) all mean the bytes are not a valid file: say so, not the errno's name.
            return kind(f"{name} is corrupt or truncated: FFmpeg could not read its header ({detail}); "
                        f"{REPLACE_HINT}")
        return kind(f"{name} could not be opened: {type(error).__name__}: {detail}")

    def _disconnect(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
                log.debug("%s: close failed", self.describe(), exc_info=True)

    def _close(self) -> None:
        self._disconnect()

    # ---------------------------------------------------------------- reading
    def _run(self) -> None:
        if self._container is None:  # a network source that was down at start-up
            if not self._reconnect(self._connect, self._startup_error or f"{self.describe()} is not reachable"):
                return
        while not self.stopping.is_set():
            frames, reason = self._read_until_end()
            self._flush_audio()
            self._disconnect()
            if self.stopping.is_set():
                return
            if self.network:
                if reason == "end of stream" and (self._declared_end is not None or not self.reconnect_policy.enabled):
                    return  # a served file (it declares a duration) played through: a clean end
                # A live stream that ends or fails is an outage: reconnect (or give up, raising).
                # Lost again before a frame: the same outage goes on (its time limit too).
                if not self._reconnect(self._connect, f"{self.describe()} lost: {reason}", continuing=frames == 0):
                    return
                continue
            if reason != "end of file":
                raise SourceError(
                    f"{self.describe()} is corrupt or truncated: reading stopped at "
                    f"{self._prev_raw_video or 0.0:.2f} s of the file ({reason}); {REPLACE_HINT}"
                )
            self._check_file_end()
            if frames == 0:
                raise SourceError(
                    f"{self.describe()} has no decodable video frames (its video stream is empty); {REPLACE_HINT}"
                )
            if not self.loop:
                return
            self._connect()

    def _check_file_end(self) -> None:
        """A file that played through with undecodable packets, or whose video stopped well
        before its declared duration, failed mid-way: a permanent fault, not a clean end."""
        with self._lock:
            errors = self.decode_errors
        if errors:
            raise SourceError(
                f"{self.describe()} is corrupt: {errors} packet(s) could not be decoded "
                f"(last video frame at {self._prev_raw_video or 0.0:.2f} s of the file); {REPLACE_HINT}"
            )
        end = self._declared_end
        last = self._prev_raw_video
        if end is not None and last is not None and last + TRUNCATED_S < end:
            raise SourceError(
                f"{self.describe()} is truncated: its video ends at {last:.2f} s "
                f"of the {end:.2f} s it declares; {REPLACE_HINT}"
            )

    def _read_until_end(self) -> tuple[int, str]:
        """Demux and decode the open input; returns (video frames emitted, why it ended)."""
        container = self._container
        assert container is not None
        streams = [s for s in (self._video_stream, self._audio_stream) if s is not None]
        emitted = 0
        try:
            for packet in container.demux(*streams):
                if self.stopping.is_set():
                    return emitted, "stopped"
                try:
                    decoded = packet.decode()
                except (av.error.FFmpegError, ValueError) as error:
                    # a packet the decoder rejects (FFmpeg's AAC decoder answers some corrupt
                    # packets with EPERM, H.264 with invalid data): skipped and counted; a file
                    # that had any ends as corrupt (_check_file_end)
                    with self._lock:
                        self.decode_errors += 1
                    log.debug("%s: skipped a bad packet: %s", self.describe(), redact_text(str(error), self.location))
                    continue
                for frame in decoded:
                    if isinstance(frame, av.VideoFrame):
                        self._on_video_frame(frame)
                        emitted += 1
                    elif isinstance(frame, av.AudioFrame):
                        self._on_audio_frame(frame)
        except av.error.EOFError:
            pass
        except (av.error.FFmpegError, OSError) as error:
            detail = getattr(error, "strerror", None) or str(error)
            return emitted, redact_text(f"FFmpeg: {detail}", self.location)
        return emitted, ("end of stream" if self.network else "end of file")

    def _rebase(self, raw_time: float) -> None:
        """Shift this connection's times so that they continue after the last emitted time."""
        if not self._rebase_pending or self._last_time is None:
            return
        frame_gap = 1.0 / self._nominal_fps
        elapsed = time.monotonic() - self._last_emit_mono if self.network else 0.0
        self._offset = self._last_time + max(frame_gap, elapsed) - raw_time
        self._rebase_pending = False

    def _on_video_frame(self, frame: av.VideoFrame) -> None:
        raw = frame.time
        if raw is None:
            raw = self._prev_raw_video + 1.0 / self._nominal_fps if self._prev_raw_video is not None else 0.0
        self._prev_raw_video = raw
        self._rebase(raw)
        t = raw + self._offset
        if self.realtime:
            if self._pace is None:
                self._pace = (time.monotonic(), t)
            due = self._pace[0] + (t - self._pace[1])
            if not self._sleep(due - time.monotonic()):
                return
        if self.stamp == "arrival":
            t = self.clock()
        image = frame.to_ndarray(format="rgb24")  # [H, W, 3] uint8
        self._last_time = t
        self._last_emit_mono = time.monotonic()
        self._emit_video(t, image)

    def _flush_audio(self) -> None:
        """Emit what the resampler still holds at the end of a connection or file."""
        if self._resampler is None or self._audio_anchor is None:
            return
        try:
            for out in self._resampler.resample(None):
                samples = out.to_ndarray().reshape(-1)
                t = self._audio_anchor + self._audio_out / self.sample_rate
                self._audio_out += len(samples)
                self._emit_audio(t, samples, self.sample_rate)
        except (av.error.FFmpegError, ValueError):
            log.debug("%s: resampler flush failed", self.describe(), exc_info=True)
        self._resampler = None

    def _on_audio_frame(self, frame: av.AudioFrame) -> None:
        raw = frame.time
        if raw is None:
            raw = self._audio_in_end if self._audio_in_end is not None else (self._prev_raw_video or 0.0)
        self._rebase(raw)
        duration = frame.samples / frame.sample_rate
        if self._audio_in_end is not None and abs(raw - self._audio_in_end) > DISCONTINUITY_S:
            log.info("%s: audio discontinuity of %.3f s; re-anchoring", self.describe(), raw - self._audio_in_end)
            self._resampler = None
        self._audio_in_end = raw + duration
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.sample_rate)
            self._audio_anchor = raw + self._offset
            self._audio_out = 0
        for out in self._resampler.resample(frame):
            samples = out.to_ndarray().reshape(-1)  # packed flt mono: [1, n] -> [n]
            t = self._audio_anchor + self._audio_out / self.sample_rate
            self._audio_out += len(samples)
            self._emit_audio(t, samples, self.sample_rate)

"""One stream inside the runtime: its sources, the newest unprocessed frame, its audio ring.

Sources call `on_video` / `on_audio` from their reader threads. A stream keeps only the newest
frame that has not been processed: a frame that is replaced before the scheduler takes it is
dropped and counted (never queued without bound, so latency cannot grow with time). Audio goes
into the stream's `AudioRing`, from which the scheduler cuts each frame's window.

`health()` decays at once: while the video source is live but has delivered nothing for a while
(capture/base.py's STALE_AFTER_S), the stream's fps reads 0 and its rolling latencies NaN
(printed "-"), not the last values before the outage.
"""

from __future__ import annotations

import threading

from ddavs_rt.capture.base import STALE_AFTER_S, Source, SourceHealth, SourceState
from ddavs_rt.capture.microphone import MicrophoneSource
from ddavs_rt.capture.types import AudioChunk, VideoFrame
from ddavs_rt.runtime.health import StreamCounters, StreamHealthSnapshot
from ddavs_rt.sync import AudioRing


class Stream:
    def __init__(
        self,
        stream_id: str,
        sample_rate: int,
        audio_buffer_s: float,
        wakeup: threading.Event,
    ) -> None:
        self.stream_id = stream_id
        self.ring = AudioRing(sample_rate, capacity_s=audio_buffer_s)
        self.counters = StreamCounters()
        self.sources: list[Source] = []
        self.video_source: Source | None = None
        self.audio_source: Source | None = None
        self.frames_dropped = 0
        self.seq = 0
        # Set by the scheduler when the engine keeps failing on this stream's input alone: the
        # stream is served no more (one line saying why); None while it is healthy.
        self.fault: str | None = None
        self._pending: VideoFrame | None = None
        self._lock = threading.Lock()
        self._wakeup = wakeup

    # ---------------------------------------------------------------- wiring
    def attach(self, video: Source, audio: Source | None) -> None:
        """Record the sources feeding this stream (audio may be the video source itself)."""
        self.video_source = video
        self.audio_source = audio
        self.sources = [video] if audio is None or audio is video else [video, audio]

    @property
    def has_audio(self) -> bool:
        return self.audio_source is not None and self.audio_source.has_audio

    # ---------------------------------------------------------------- called by reader threads
    def on_video(self, frame: VideoFrame) -> None:
        with self._lock:
            if self._pending is not None:
                self.frames_dropped += 1
            self._pending = frame
        self._wakeup.set()

    def on_audio(self, chunk: AudioChunk) -> None:
        self.ring.push(chunk)

    # ---------------------------------------------------------------- called by the scheduler
    def has_pending(self) -> bool:
        with self._lock:
            return self._pending is not None

    def take(self) -> VideoFrame | None:
        with self._lock:
            frame, self._pending = self._pending, None
            return frame

    def audio_live(self) -> bool:
        """Whether the stream's audio source is delivering (not reconnecting, not ended): a frame
        waits for late audio only then; during a microphone outage its windows are cut at once
        (missing audio: incomplete windows) and video goes on at its own rate."""
        source = self.audio_source
        return source is not None and source.has_audio and source.state == SourceState.RUNNING

    def audio_state(self) -> str | None:
        """The state of a paired audio source (a microphone), None when audio comes with the video."""
        source = self.audio_source
        return None if source is None or source is self.video_source else source.state.value

    def mic_overflows(self) -> int:
        """PortAudio input overflows reported by the stream's microphone (0 without one)."""
        source = self.audio_source
        return source.overflows if isinstance(source, MicrophoneSource) else 0

    def next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    @staticmethod
    def _stalled(video: SourceHealth) -> bool:
        """A live video source that has delivered nothing for a while (an outage, a dead camera)."""
        if video.state not in (SourceState.RUNNING, SourceState.RECONNECTING):
            return False
        return video.last_frame_age_s is None or (video.last_frame_age_s > STALE_AFTER_S and video.video_fps == 0.0)

    def health(self, publisher_dropped: int = 0) -> StreamHealthSnapshot:
        (p50, p95, p99), (run50, run95, run99), infer50 = self.counters.latency_percentiles()
        fps = self.counters.fps()
        j, f = self.counters.take_truth()
        run_j, run_f = self.counters.run_truth()
        source_health = [source.health() for source in self.sources]
        source_drops = sum(h.video_dropped for h in source_health)
        state = source_health[0].state.value if source_health else "none"
        errors = [h.error for h in source_health if h.error]
        if self.fault is not None:
            errors.insert(0, self.fault)
        if source_health and self._stalled(source_health[0]):
            # nothing arrives: the rate is 0 and the last latencies describe nothing current
            fps = 0.0
            p50 = p95 = p99 = infer50 = float("nan")
        return StreamHealthSnapshot(
            stream_id=self.stream_id,
            source_state=state,
            processed=self.counters.processed,
            fps=fps,
            frames_dropped=self.frames_dropped + source_drops,
            silent_windows=self.counters.silent_windows,
            publisher_dropped=publisher_dropped,
            reconnects=sum(h.reconnects for h in source_health),
            latency_rolling_p50_ms=p50,
            latency_rolling_p95_ms=p95,
            latency_rolling_p99_ms=p99,
            infer_rolling_p50_ms=infer50,
            live_j=j,
            live_f=f,
            error=errors[0] if errors else None,
            run_j=run_j,
            run_f=run_f,
            latency_run_p50_ms=run50,
            latency_run_p95_ms=run95,
            latency_run_p99_ms=run99,
            rolling_s=self.counters.latency.seconds,
            audio_warmup_windows=self.counters.audio_warmup_windows,
            audio_incomplete_windows=self.counters.audio_incomplete_windows,
            audio_ring_gaps=self.ring.gaps,
            mic_overflows=self.mic_overflows(),
            engine_failed_frames=self.counters.engine_failed_frames,
            fault=self.fault,
            audio_state=self.audio_state(),
        )

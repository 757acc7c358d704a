"""The SynthAVS live scene as a capture source: frames, audio and ground truth in real time.

Each step of `ddavs_rt.synth.live.LiveScene` renders one frame period: the frame at time t and
the audio of (t - 1/fps, t]. The audio chunk is emitted first (its first sample at
t - 1/fps on the scene clock), then the frame with its ground truth, at monotonic time
origin + t when `realtime` is on, as fast as possible otherwise. The scene clock is the stream
clock, so the runtime's window for a frame holds exactly the audio that was playing before it.
"""

from __future__ import annotations

import time

from ddavs_rt.capture.base import Source
from ddavs_rt.errors import SourceError


class SyntheticSource(Source):
    def __init__(
        self,
        stream_id: str = "demo",
        *,
        seed: int = 2026,
        fps: float = 25.0,
        size: int = 224,
        sample_rate: int = 16000,
        realtime: bool = True,
        max_frames: int | None = None,
        **queue_options,
    ) -> None:
        super().__init__(stream_id, **queue_options)
        self.seed, self.fps, self.size, self.sample_rate = seed, fps, size, sample_rate
        self.realtime = realtime
        self.max_frames = max_frames
        self.has_audio = True
        self._scene = None

    def describe(self) -> str:
        return f"synthetic scene (seed {self.seed}, {self.fps:g} fps)"

    def _open(self) -> None:
        from ddavs_rt.synth.live import LiveScene

        try:
            self._scene = LiveScene(self.seed, fps=self.fps, size=self.size, sample_rate=self.sample_rate)
        except ValueError as error:
            raise SourceError(f"{self.describe()} cannot start: {error}") from None

    def _run(self) -> None:
        assert self._scene is not None
        frames = 0
        while not self.stopping.is_set():
            if self.max_frames is not None and frames >= self.max_frames:
                return
            step = self._scene.step()
            if self.realtime:
                delay = self._t0 + step.time - time.monotonic()
                if not self._sleep(delay):
                    return
            audio_start = step.time - len(step.audio) / self.sample_rate
            self._emit_audio(audio_start, step.audio, self.sample_rate)
            self._emit_video(step.time, step.image, ground_truth=step.mask, semantic_truth=step.semantic,
                             extra={"sounding": step.sounding})
            frames += 1

"""A source that plays the SynthAVS live scene: frames with ground truth, and their audio.

The scene's own clock is the stream clock: frame k is stamped `step.time` ((k + 1) / fps) and its
audio chunk starts at the scene sample it begins with, so audio and video line up exactly. With
`realtime=True` (the demo) each frame is emitted when the monotonic clock since start() reaches
its time, like a camera; with `realtime=False` as fast as the consumer's queue allows to be
filled (tests, benchmarks). If rendering falls behind real time, frames are still emitted in
order (never skipped at the source); the consumer's drop-oldest queue sheds the backlog.
"""

from __future__ import annotations

import logging

from ddavs_rt.capture.base import Source

log = logging.getLogger(__name__)


class SyntheticSource(Source):
    """Frames, ground-truth masks and audio from `ddavs_rt.synth.live.LiveScene`."""

    def __init__(
        self,
        seed: int = 0,
        stream_id: str = "synthetic",
        *,
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
        return f"synthetic scene (seed {self.seed})"

    def _open(self) -> None:
        from ddavs_rt.synth.live import LiveScene

        self._scene = LiveScene(self.seed, fps=self.fps, size=self.size, sample_rate=self.sample_rate)

    def _run(self) -> None:
        scene = self._scene
        assert scene is not None
        emitted = 0
        audio_start = 0  # scene sample index of the next audio chunk
        while not self.stopping.is_set():
            if self.max_frames is not None and emitted >= self.max_frames:
                return
            step = scene.step()
            if self.realtime and not self._sleep(step.time - self.clock()):
                return
            self._emit_audio(audio_start / self.sample_rate, step.audio, self.sample_rate)
            audio_start += len(step.audio)
            self._emit_video(
                step.time, step.image, ground_truth=step.mask, semantic_truth=step.semantic,
                extra={"sounding": list(step.sounding), "visible": list(step.visible)},
            )
            emitted += 1

"""SyntheticSource over the real SynthAVS live scene."""

from __future__ import annotations

import numpy as np

from ddavs_rt.capture.base import SourceState
from ddavs_rt.capture.synthetic import SyntheticSource
from ddavs_rt.synth.live import LiveScene


def test_frames_carry_ground_truth_and_audio_lines_up_with_frames():
    source = SyntheticSource(3, "syn", fps=25.0, size=64, realtime=False, max_frames=10,
                             video_queue_size=100, audio_queue_size=100)
    source.start()
    assert source.join(30)
    frames, chunks = source.video_queue.drain(), source.drain_audio()
    assert source.state == SourceState.FINISHED and source.has_audio
    assert [f.index for f in frames] == list(range(10))
    assert np.allclose([f.time for f in frames], (np.arange(10) + 1) / 25.0)
    reference = LiveScene(3, fps=25.0, size=64, sample_rate=16000)
    for frame in frames:
        step = reference.step()
        assert np.array_equal(frame.image, step.image)
        assert np.array_equal(frame.ground_truth, step.mask)
        assert np.array_equal(frame.semantic_truth, step.semantic)
        assert frame.extra["sounding"] == step.sounding
    # Audio is contiguous from 0 and ends exactly at the last frame's time.
    assert chunks[0].time == 0.0
    assert max(abs(b.time - a.end_time) for a, b in zip(chunks, chunks[1:])) < 1e-9
    assert abs(chunks[-1].end_time - frames[-1].time) < 1e-9
    assert {c.sample_rate for c in chunks} == {16000}


def test_realtime_frames_are_not_emitted_before_their_time():
    emitted = []
    source = SyntheticSource(1, "syn", size=32, realtime=True, max_frames=6,
                             on_video=lambda f: emitted.append((f.time, source.clock())))
    source.start()
    assert source.join(30)
    assert len(emitted) == 6
    assert all(clock >= t for t, clock in emitted)  # paced: never ahead of the stream clock

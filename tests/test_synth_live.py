"""The live scene: continuous audio however it is stepped, ground truth that follows the sounding
classes, and deterministic frames."""

from __future__ import annotations

import numpy as np

from ddavs_rt.synth.audio import rms_db
from ddavs_rt.synth.classes import CLASS_NAMES
from ddavs_rt.synth.live import LiveScene

SIZE = 96


def test_audio_is_one_continuous_signal_whatever_the_frame_rate() -> None:
    at_25 = LiveScene(3, fps=25.0, size=SIZE)
    at_10 = LiveScene(3, fps=10.0, size=SIZE)
    steps_25 = [at_25.step() for _ in range(100)]  # 4 s
    steps_10 = [at_10.step() for _ in range(40)]
    assert all(len(s.audio) == 640 and s.audio.dtype == np.float32 for s in steps_25)
    assert [s.time for s in steps_25[:3]] == [0.04, 0.08, 0.12]
    joined_25 = np.concatenate([s.audio for s in steps_25])
    joined_10 = np.concatenate([s.audio for s in steps_10])
    assert joined_25.shape == joined_10.shape == (64000,)
    # the soundtrack does not depend on where it was cut: the seams are invisible
    np.testing.assert_array_equal(joined_25, joined_10)
    np.testing.assert_array_equal(joined_25, at_25.audio(0, 64000))
    jumps = np.abs(np.diff(joined_25))
    seams = jumps[np.arange(639, 64000 - 1, 640)]
    assert seams.max() <= jumps.max()
    assert np.percentile(seams, 90) <= np.percentile(jumps, 99.9)


def test_ground_truth_follows_the_sounding_classes() -> None:
    scene = LiveScene(5, fps=25.0, size=SIZE)
    steps = [scene.step() for _ in range(25 * 24)]  # 24 s
    saw_silent_visible = saw_sounding_visible = saw_offscreen = False
    for step in steps:
        assert step.image.shape == (SIZE, SIZE, 3) and step.image.dtype == np.uint8
        ids = [CLASS_NAMES.index(name) for name in step.sounding]
        assert step.sounding == scene.sounding_at(step.time)
        assert ((step.mask == 1) == np.isin(step.semantic, ids)).all()
        assert set(np.unique(step.mask).tolist()) <= {0, 1}
        visible = {CLASS_NAMES[c] for c in np.unique(step.semantic).tolist() if c}
        assert visible == set(step.visible)
        saw_silent_visible |= bool(visible - set(step.sounding))
        saw_sounding_visible |= bool(visible & set(step.sounding))
        saw_offscreen |= bool(set(step.sounding) - visible)
    assert saw_silent_visible and saw_sounding_visible and saw_offscreen
    # objects come and go
    assert len({tuple(s.visible) for s in steps}) >= 3


def test_audio_is_loud_exactly_when_something_sounds() -> None:
    scene = LiveScene(5, fps=25.0, size=SIZE)
    steps = [scene.step() for _ in range(25 * 40)]
    quiet, loud = [], []
    for second in range(40):
        window = steps[second * 25 : (second + 1) * 25]
        states = {tuple(scene.sounding_at(t)) for t in np.linspace(second + 1e-6, second + 1, 50)}
        if len(states) != 1:
            continue  # a class started or stopped within this second
        level = rms_db(np.concatenate([s.audio for s in window]))
        (loud if states.pop() else quiet).append(level)
    assert quiet and loud, "the scene should have silent and sounding seconds"
    assert min(loud) > max(quiet) + 6.0, (min(loud), max(quiet))


def test_same_seed_same_pictures_different_seed_different_scene() -> None:
    a, b, c = LiveScene(8, size=SIZE), LiveScene(8, size=SIZE), LiveScene(9, size=SIZE)
    for _ in range(30):
        sa, sb, sc = a.step(), b.step(), c.step()
        assert np.array_equal(sa.image, sb.image) and np.array_equal(sa.mask, sb.mask)
    assert not np.array_equal(sa.image, sc.image)

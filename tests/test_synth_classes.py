"""The SynthAVS class table: look-alike pairs render alike and sound different, sound-alike pairs
sound alike, every class is distinct otherwise, and the VOC palette is the standard one."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ddavs_rt.synth.audio import make_voice
from ddavs_rt.synth.classes import (
    CLASS_NAMES,
    CLASSES,
    LOOK_ALIKE,
    SOUND_ALIKE,
    class_id,
    class_table,
    spec_of,
    voc_palette,
)
from ddavs_rt.synth.render import draw_look, paint, radius_for_area

SR = 16000


def _mel_filterbank(n_fft: int = 512, n_mels: int = 64) -> np.ndarray:
    def mel(f):
        return 2595 * np.log10(1 + f / 700)

    def hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    edges = hz(np.linspace(mel(60), mel(7800), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / SR)
    bank = np.zeros((n_mels, len(freqs)))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        bank[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return bank  # [64, 257]


_BANK = _mel_filterbank()


def _mel_profile(x: np.ndarray) -> np.ndarray:
    """Mean and std over time of a log-mel spectrogram: [128]."""
    hop, win = 160, 512
    count = (len(x) - win) // hop
    frames = np.stack([x[i * hop : i * hop + win] for i in range(count)]) * np.hanning(win)
    logmel = np.log(_BANK @ (np.abs(np.fft.rfft(frames)) ** 2).T + 1e-6)  # [64, T]
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)])


def _profiles(name: str, count: int = 4) -> list[np.ndarray]:
    spec = spec_of(class_id(name)).sound
    return [_mel_profile(make_voice(spec, np.random.default_rng(seed)).render(0, 2 * SR)) for seed in range(count)]


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / math.sqrt(len(a)))


@pytest.fixture(scope="module")
def profiles() -> dict[str, list[np.ndarray]]:
    return {spec.name: _profiles(spec.name) for spec in CLASSES}


def test_table_has_enough_classes_and_pairs() -> None:
    assert len(CLASSES) >= 14
    assert CLASS_NAMES[0] == "background" and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert len(LOOK_ALIKE) >= 3 and len(SOUND_ALIKE) >= 3
    table = class_table()
    assert table["classes"] == list(CLASS_NAMES)
    assert [tuple(p) for p in table["look_alike"]] == list(LOOK_ALIKE)
    assert [tuple(p) for p in table["sound_alike"]] == list(SOUND_ALIKE)


def test_only_look_alike_pairs_share_shape_and_colour() -> None:
    for a, b in itertools.combinations(CLASSES, 2):
        same = a.appearance.shape == b.appearance.shape and a.appearance.colour == b.appearance.colour
        paired = (a.name, b.name) in LOOK_ALIKE or (b.name, a.name) in LOOK_ALIKE
        assert same == paired, (a.name, b.name)
        if paired:  # they differ by texture or by size, nothing else
            assert (a.appearance.texture != b.appearance.texture) != (a.appearance.area != b.appearance.area)


def _render_alone(name: str, seed: int, area: float) -> tuple[np.ndarray, np.ndarray]:
    """image float32 [96, 96, 3] and mask bool [96, 96] of one instance on black."""
    spec = spec_of(class_id(name))
    look = draw_look(spec.appearance, np.random.default_rng(seed))
    image = np.zeros((96, 96, 3), np.float32)
    semantic = np.zeros((96, 96), np.uint8)
    ids = np.zeros_like(semantic)
    paint(image, semantic, ids, look, radius_for_area(look.shape, area * 96 * 96), 0.3, 48.0, 48.0, class_id(name), 1)
    return image, semantic > 0


def test_look_alike_pairs_render_alike_but_sound_different(profiles) -> None:
    for a, b in LOOK_ALIKE:
        # at the same size the silhouettes are identical and the mean colours close
        image_a, mask_a = _render_alone(a, 1, 0.08)
        image_b, mask_b = _render_alone(b, 1, 0.08)
        assert (mask_a == mask_b).all(), (a, b)
        colour_gap = np.abs(image_a[mask_a].mean(0) - image_b[mask_b].mean(0)).max()
        assert colour_gap < 80, (a, b, colour_gap)
        # while their sounds are further apart than two instances of either class
        cross = min(_distance(x, y) for x in profiles[a] for y in profiles[b])
        within = max(_distance(x, y) for n in (a, b) for x, y in itertools.combinations(profiles[n], 2))
        assert cross > within, (a, b, cross, within)


def test_unrelated_classes_look_different() -> None:
    """Mean colour of the silhouette differs a lot, or the silhouette itself does."""
    pairs = {frozenset(p) for p in LOOK_ALIKE}
    for a, b in itertools.combinations([c.name for c in CLASSES], 2):
        if frozenset((a, b)) in pairs:
            continue
        image_a, mask_a = _render_alone(a, 2, 0.08)
        image_b, mask_b = _render_alone(b, 2, 0.08)
        iou = (mask_a & mask_b).sum() / (mask_a | mask_b).sum()
        colour_gap = np.linalg.norm(image_a[mask_a].mean(0) - image_b[mask_b].mean(0))
        assert iou < 0.8 or colour_gap > 40, (a, b, iou, colour_gap)


def test_sound_alike_pairs_are_closer_than_any_unrelated_pair(profiles) -> None:
    alike = {frozenset(p) for p in SOUND_ALIKE}
    names = [c.name for c in CLASSES]

    def gap(a: str, b: str) -> float:
        return min(_distance(x, y) for x in profiles[a] for y in profiles[b])

    unrelated = min(gap(a, b) for a, b in itertools.combinations(names, 2) if frozenset((a, b)) not in alike)
    for a, b in SOUND_ALIKE:
        assert gap(a, b) < unrelated, (a, b, gap(a, b), unrelated)


def test_voc_palette_matches_the_standard_bit_pattern() -> None:
    palette = voc_palette()
    assert palette[0] == (0, 0, 0)
    assert palette[1] == (128, 0, 0) and palette[2] == (0, 128, 0) and palette[3] == (128, 128, 0)
    assert palette[15] == (192, 128, 128) and palette[16] == (0, 64, 0)
    assert len(set(palette[: len(CLASS_NAMES)])) == len(CLASS_NAMES)

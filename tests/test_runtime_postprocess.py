"""Post-processing: masks and classes from logits; the live accuracy matches the official metrics."""

from __future__ import annotations

import numpy as np
import pytest

from ddavs_rt.metrics import avsbench_f, avsbench_j
from ddavs_rt.runtime.postprocess import live_accuracy, logits_to_result


@pytest.mark.parametrize("seed", range(6))
def test_live_accuracy_equals_the_official_batch_of_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (1, 40, 48)).astype(np.float32)
    truth = (rng.random((40, 48)) < (0.0 if seed == 0 else 0.3)).astype(np.uint8)
    j, f = live_accuracy(logits, truth)
    assert j == pytest.approx(avsbench_j(logits, truth[None]), abs=1e-6)
    if truth.any():
        assert f == pytest.approx(avsbench_f(logits, truth[None]), abs=1e-4)
    else:  # the official protocol skips frames without ground truth in F
        assert f is None


def test_binary_logits_become_a_frame_sized_mask_with_its_class() -> None:
    logits = np.full((1, 8, 8), -10.0, np.float32)
    logits[0, 2:6, 2:6] = 10.0
    result = logits_to_result(logits, (16, 16), ("background", "sounding"))
    assert result.mask.shape == (16, 16) and result.encoding == "png-binary"
    assert result.mask[4:12, 4:12].all() and result.mask.sum() == 64
    assert [c.class_id for c in result.classes] == [1] and result.classes[0].pixels == 64


def test_semantic_logits_give_class_ids_and_counts() -> None:
    logits = np.zeros((3, 4, 4), np.float32)
    logits[0] = 5.0
    logits[2, :2, :] = 10.0
    result = logits_to_result(logits, (4, 4), ("background", "dog", "car"))
    assert result.encoding == "png-class" and result.num_classes == 3
    assert {c.name: c.pixels for c in result.classes} == {"car": 8}


def test_class_logits_are_scored_as_sounding_versus_background() -> None:
    # 3 classes on a 2x2 frame: background wins at (0, 0) only; "not background" is sounding.
    logits = np.zeros((3, 2, 2), np.float32)
    logits[0] = [[4.0, -4.0], [-4.0, -4.0]]
    logits[1] = [[0.0, 3.0], [0.0, 0.0]]
    logits[2] = [[0.0, 0.0], [3.0, 0.0]]
    truth = np.array([[0, 1], [1, 0]], np.uint8)
    # sounding probability = 1 - softmax[0]: (0,0) ~0.04, the others > 0.5 -> predicted {(0,1),(1,0),(1,1)}
    j, f = live_accuracy(logits, truth)
    assert j == pytest.approx(2 / 3, abs=1e-6)  # inter 2, union 3
    # F: at the best threshold the three predicted pixels give P = 2/3, R = 1, or a threshold
    # above (1,1)'s probability keeps only the two true ones: P = R = 1 -> F = 1.
    probs = 1 - np.exp(logits[0]) / np.exp(logits).sum(axis=0)
    assert probs[1, 1] < min(probs[0, 1], probs[1, 0])  # so such a threshold exists
    assert f == pytest.approx(1.0, abs=1e-6)


def test_live_accuracy_never_runs_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler scores every synthetic frame: torch's sort/searchsorted there cost about 20x
    the numpy form and start torch's thread pool beside the engine's, so live scoring must give
    the official numbers without calling torch at all."""
    import ddavs_rt.metrics as metrics

    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, (1, 40, 48)).astype(np.float32)
    truth = (rng.random((40, 48)) < 0.3).astype(np.uint8)
    official = (avsbench_j(logits, truth[None]), avsbench_f(logits, truth[None]))

    class NoTorch:
        def __getattr__(self, name: str):
            raise AssertionError(f"live scoring called torch.{name}")

    monkeypatch.setattr(metrics, "torch", NoTorch())
    j, f = live_accuracy(logits, truth)
    assert j == pytest.approx(official[0], abs=1e-6) and f == pytest.approx(official[1], abs=1e-4)

"""The torch backend's compiled engine runs a fixed set of batch sizes: a batch is padded up to
the next one, so the scheduler's varying batch sizes compile at most one graph per size and never
recompile after it (torch._dynamo's own counters), and the outputs equal the unpadded eager ones.
On the CPU with dynamo's eager backend (the graph capture and its guards are what recompile; the
CUDA-graph mode on a GPU is specialised the same way)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ddavs_rt.engine.torch_backend import TorchEngine, padded_size

ROOT = Path(__file__).resolve().parents[1]


def test_padded_size_picks_the_next_compiled_size():
    sizes = (1, 2, 4, 8)
    assert [padded_size(n, sizes) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 4, 4, 8, 8]
    with pytest.raises(ValueError):
        padded_size(9, sizes)


def test_varying_batches_hit_no_recompile_and_match_eager(checkpoint):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch.set_num_threads(1)
    torch._dynamo.reset()
    counters.clear()
    engine = TorchEngine(checkpoint, device="cpu", compile=True, compile_batch_sizes=(1, 2, 4), compile_backend="eager")
    eager = TorchEngine(checkpoint, device="cpu", compile=False)
    assert engine.spec.batch_max == 4
    size = engine.spec.input_size[0]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    audio = rng.uniform(-0.5, 0.5, (4, engine.spec.window_samples)).astype(np.float32)

    for n in (1, 2, 4):  # the first call at each compiled size compiles it
        engine.infer(frames[:n], audio[:n])
    compiled = dict(counters["stats"])
    assert compiled.get("unique_graphs", 0) >= 1
    for n in (3, 1, 4, 2, 3, 1):  # the scheduler's varying sizes: padded, nothing new compiles
        got = engine.infer(frames[:n], audio[:n])
        assert got.shape[0] == n
        np.testing.assert_allclose(got, eager.infer(frames[:n], audio[:n]), atol=1e-5)
    assert dict(counters["stats"]) == compiled  # no recompile, no new graph
    assert not counters["recompiles"] or sum(counters["recompiles"].values()) <= 2  # one per size after the first
    # the counters do see a recompile: an unpadded size 3 straight into the compiled forward
    with torch.inference_mode():
        engine._forward(torch.from_numpy(frames[:3]), torch.from_numpy(audio[:3]))
    assert dict(counters["stats"]) != compiled

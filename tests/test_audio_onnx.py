"""The audio front-end and the small encoder export to ONNX and run in ONNX Runtime with parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ddavs_rt.config import HTSATConfig, ModelConfig
from ddavs_rt.model.audio_encoder import build_audio_encoder
from ddavs_rt.model.frontend import LogMel

torch.set_num_threads(2)


def _export_and_compare(module: nn.Module, samples: int, path: Path) -> set[str]:
    module.eval()
    example = torch.rand(2, samples) * 2 - 1
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes={"waveform": {0: batch}})
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for size in (1, 3):
        x = torch.rand(size, samples, generator=torch.Generator().manual_seed(size)) * 2 - 1
        with torch.no_grad():
            expected = module(x).numpy()
        got = session.run(None, {name: x.numpy()})[0]
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    return {node.op_type for node in onnx.load(str(path)).graph.node}


class _FrontEnd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logmel = LogMel(HTSATConfig().frontend, input_rate=16000)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.logmel(waveform)


def test_htsat_frontend_with_resampling_exports_as_plain_ops(tmp_path: Path) -> None:
    ops = _export_and_compare(_FrontEnd(), 16000, tmp_path / "frontend.onnx")
    assert "Conv" in ops and "Pad" in ops
    assert not ops & {"STFT", "DFT", "MelWeightMatrix", "Loop", "If"}


@pytest.mark.parametrize("rate", [16000, 22050])
def test_small_encoder_exports_with_a_dynamic_batch(rate: int, tmp_path: Path) -> None:
    enc = build_audio_encoder(ModelConfig(name="t", audio={"kind": "small"}, sample_rate=rate))
    ops = _export_and_compare(enc, rate, tmp_path / "small.onnx")
    assert not ops & {"STFT", "DFT", "Loop", "If"}

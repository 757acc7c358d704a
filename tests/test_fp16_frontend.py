"""The audio front-ends (waveform -> log-mel) compute in fp32 in every mixed-precision path.

In fp16 the HTSAT front-end's decibel floor 10 log10(max(mel, 1e-10)) underflows (1e-10 is 0 in
fp16: silence gives -inf) and the power spectrum of a full-scale tone passes fp16's 65504 (inf,
then NaN). The first test shows that on the raw fp16 math; the others show the guards: autocast
is off inside the front-end, a `.half()` model keeps its fixed bases fp32, and the ONNX fp16
conversion of the TensorRT build leaves the front-end's nodes fp32."""

from __future__ import annotations

import copy
import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ddavs_rt.calibration.tensorrt_build import fp16_model, front_end_nodes
from ddavs_rt.config import HTSATConfig, SmallAudioConfig, VGGishConfig
from ddavs_rt.model.frontend import LogMel

RATE = 16000
FRONT_ENDS = {"htsat": HTSATConfig().frontend, "vggish": VGGishConfig().frontend, "small": SmallAudioConfig().frontend}


def stress(samples: int = RATE) -> torch.Tensor:
    """Silence, a full-scale 1 kHz sine, the same tone clipped (a full-scale square wave: what a
    too-loud tone becomes), full-scale uniform noise: [4, samples]."""
    t = torch.arange(samples, dtype=torch.float64) / RATE
    sine = torch.sin(2 * math.pi * 1000 * t)
    noise = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, samples))
    return torch.stack([torch.zeros(samples, dtype=torch.float64), sine, torch.sign(sine), noise]).float()


def test_the_raw_fp16_htsat_front_end_gives_inf_and_nan():
    front = LogMel(FRONT_ENDS["htsat"], RATE).eval()
    raw_front = copy.deepcopy(front)
    for module in raw_front.modules():  # the fixed bases in fp16 too (what `.half()` did before)
        for name, buffer in module._buffers.items():
            module._buffers[name] = buffer.half()
    with torch.no_grad():
        raw = LogMel.forward(raw_front, stress().half()).float()  # the unguarded fp16 math
        guarded = front(stress())
    assert torch.isneginf(raw[0]).any()  # silence: log10(0)
    assert not torch.isfinite(raw[2]).all()  # full-scale (clipped) tone: power > 65504
    assert torch.isfinite(guarded).all()
    assert guarded[0].max() == pytest.approx(-100.0)  # the fp32 floor: 10 log10(1e-10)


@pytest.mark.parametrize("kind", sorted(FRONT_ENDS))
def test_front_end_runs_in_fp32_under_autocast_and_in_a_half_model(kind):
    front = LogMel(FRONT_ENDS[kind], RATE).eval()
    audio = stress()
    with torch.no_grad():
        ref = front(audio)
        with torch.autocast("cpu", dtype=torch.float16):
            auto = front(audio)
        half_front = copy.deepcopy(front).half()
        half = half_front(audio.half())
        ref_of_half_audio = front(audio.half().float())  # the same fp16-rounded samples, in fp32
    assert auto.dtype == torch.float32 and torch.equal(auto, ref)  # autocast was off inside
    assert half.dtype == torch.float16  # back in the caller's dtype
    assert half_front.mel_fb.dtype == torch.float32 and half_front.stft.conv_real.dtype == torch.float32
    assert torch.isfinite(ref).all() and torch.isfinite(half).all()
    # only the final rounding to fp16 differs: half a unit in the last place of |value| <= 128
    assert (half.float() - ref_of_half_audio).abs().max() <= 0.07


class _FrontAndLayer(nn.Module):
    """The HTSAT front-end followed by a layer, as an encoder uses it."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMel(FRONT_ENDS["htsat"], RATE)
        self.proj = nn.Linear(FRONT_ENDS["htsat"].n_mels, 8)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.proj(self.frontend(audio) / 100.0)


def test_the_onnx_fp16_conversion_keeps_the_front_end_fp32(tmp_path):
    from onnxruntime.transformers import float16

    torch.manual_seed(0)
    module = _FrontAndLayer().eval()
    audio = stress()
    with torch.no_grad():
        ref = module(audio).numpy()
    proto = torch.onnx.export(module, (audio,), dynamo=True, input_names=["audio"], output_names=["y"],
                              dynamic_shapes={"audio": {0: torch.export.Dim("batch", min=1, max=4)}}).model_proto
    keep = front_end_nodes(proto)
    assert keep and len(keep) < len(proto.graph.node)  # the front-end, not the layer after it

    def run(model) -> np.ndarray:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return session.run(None, {"audio": audio.numpy()})[0]

    whole = run(float16.convert_float_to_float16(copy.deepcopy(proto), keep_io_types=True))
    converted, _ = fp16_model(proto)
    got = run(converted)
    span = ref.max() - ref.min()
    # converted whole, the fp16 front-end is 10% or more of the output's range off on silence and
    # the tones (the floor 1e-10 becomes fp16's smallest 6e-8; the spectrum is rounded to fp16)
    assert all(np.abs(whole[i] - ref[i]).max() > 0.1 * span for i in range(3)) or not np.isfinite(whole).all()
    assert np.isfinite(got).all()
    assert np.abs(got - ref).max() <= 0.002 * span
    assert any(t.data_type == 10 for t in converted.graph.initializer)  # FLOAT16: the layer after it is fp16

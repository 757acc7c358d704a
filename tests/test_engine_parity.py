"""Every CPU backend and precision against the torch checkpoint, on the shipped model and SynthAVS clips.

The shipped `models/ddavs-tiny-synth` (trained weights: random weights segment nothing, so a J&F
comparison on them would prove nothing) runs the same few SynthAVS clips (fixed seed, written at
the graph's 160x160 input size so no engine resizes anything: every difference is the graph's)
through

- torch: the checkpoint in fp32 (the reference);
- ONNX Runtime fp32 and OpenVINO fp32: the folder's `model.onnx`;
- ONNX Runtime int8 and OpenVINO int8: made by `ddavs-rt calibrate` (the CLI entry, as a user runs
  it: `--engine onnxruntime --method minmax`, the method the shipped int8 file was made with, and
  `--engine openvino`, NNCF) on calibration clips of another seed, made once per module. Not the
  default entropy method: its KL search is pure Python and took over 10 minutes for these 40
  samples on the loaded 2-core VM (test_calibration.py checks that entropy is really used;
  bench/accuracy.py measures the entropy file on 300 clips);
- OpenVINO bf16: only where the CPU multiplies bf16 natively (AMX / AVX-512 BF16); elsewhere
  OpenVINO refuses it by design, and the test skips naming the missing CPU flags.

J and F are computed by `ddavs-rt eval`'s code (`train.evaluate.evaluate_model` with
`ddavs_rt.metrics`, the AVSBench TPAVI definitions) against the clips' ground-truth masks.

Tolerances, per precision:
- fp32: the same graph in float32 with different kernels (fusions, summation order); measured
  differences are about 1e-5 on logits of magnitude up to about 30. Bound: max |logit - torch|
  <= FP32_ATOL (1e-3: 100x headroom over the measured, and far below any difference that changes a
  mask), and every mask pixel equal except where |torch logit| < FP32_ATOL (a pixel on the 0.5
  threshold may flip on rounding alone).
- int8 / bf16: the logits move by design (quantization error is about 1 % of each tensor's range),
  so they are judged by what users see: |J&F(engine) - J&F(torch)| <= LOW_PRECISION_JF (0.03 on
  these 20 frames; issue 16's bound is 0.01 on 300 clips, checked by bench/accuracy.py, and a few
  frames carry more noise) and at least LOW_PRECISION_AGREEMENT (97 %) of mask pixels equal to
  torch's. A broken quantization loses far more than that: the NNCF PERFORMANCE preset lost 0.66
  J&F on this model (docs/results/cpu-engines.md), and the wrong colour order, which
  `test_the_checks_catch_a_backend_with_wrong_preprocessing` feeds through the same checks, fails both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ddavs_rt.engine import open_engine
from ddavs_rt.engine.machine import cpu_flags

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "ddavs-tiny-synth"
CLIPS, CLIP_SEED = 4, 5150  # 4 clips x 5 frames, a seed no training, validation or test set uses
CALIB_CLIPS, CALIB_SEED = 8, 6160  # 40 calibration samples
BATCH_CLIPS = 2  # metric batch: 2 clips x 5 frames
FP32_ATOL = 1e-3
LOW_PRECISION_JF = 0.03
LOW_PRECISION_AGREEMENT = 0.97
BF16_FLAGS = {"amx_bf16", "avx512_bf16"}

openvino = pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'ddavs-rt[openvino]')")
pytestmark = pytest.mark.slow


@dataclass
class Run:
    """An engine's logits on every test frame and its J / F / J&F against the ground truth."""

    logits: np.ndarray  # [frames, H, W]
    j: float
    f: float
    jf: float


class _Recording:
    """Wraps a model or an engine where `evaluate_model` expects a module, keeping every output."""

    training = False

    def __init__(self, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.forward = forward
        self.outputs: list[torch.Tensor] = []

    def eval(self) -> "_Recording":
        return self

    def train(self, mode: bool = True) -> "_Recording":
        return self

    def __call__(self, frames: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        out = self.forward(frames, audio).float()
        self.outputs.append(out)
        return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from ddavs_rt.synth.writer import write_dataset
    from ddavs_rt.train.datasets import open_dataset
    from ddavs_rt.train.evaluate import ClipSelection

    root = tmp_path_factory.mktemp("parity-clips")
    write_dataset(root, clips=CLIPS, seed=CLIP_SEED, size=160, split="test")
    dataset = open_dataset(root, "synthavs", "test", size=160, sample_rate=16000)
    assert len(dataset) == CLIPS
    return ClipSelection(dataset, list(range(CLIPS)))


@pytest.fixture(scope="module")
def calibration_data(tmp_path_factory) -> Path:
    from ddavs_rt.synth.writer import write_dataset

    root = tmp_path_factory.mktemp("parity-calib")
    write_dataset(root, clips=CALIB_CLIPS, seed=CALIB_SEED, size=160, split="train")
    return root


def _run(forward, clips) -> Run:
    from ddavs_rt.train.evaluate import evaluate_model

    recording = _Recording(forward)
    metrics = evaluate_model(recording, clips, BATCH_CLIPS)
    logits = torch.cat(recording.outputs)[:, 0].numpy()
    return Run(logits, float(metrics.j), float(metrics.f), float(metrics.jf))


def _engine_forward(engine):
    return lambda frames, audio: torch.from_numpy(engine.infer(frames.numpy(), audio.numpy()))


@pytest.fixture(scope="module")
def reference(clips) -> Run:
    from ddavs_rt.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(SHIPPED, map_location="cpu")
    model.eval()
    with torch.no_grad():
        run = _run(model, clips)
    assert run.jf > 0.5, "the shipped model should segment its own benchmark's clips"  # else J&F parity means nothing
    return run


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory, calibration_data) -> dict[str, Path]:
    """The two int8 files `ddavs-rt calibrate` makes from the shipped export, once per module."""
    from ddavs_rt.cli import main

    work = tmp_path_factory.mktemp("parity-int8")
    files = {"onnxruntime": work / "model.int8.onnx", "openvino": work / "model.int8.xml"}
    for engine, out in files.items():
        method = ["--method", "minmax", "--cache-dir", str(work / "cache")] if engine == "onnxruntime" else []
        assert main(["calibrate", "--onnx", str(SHIPPED / "model.onnx"), "--data", str(calibration_data),
                     "--out", str(out), "--engine", engine, "--clips", str(CALIB_CLIPS), *method]) == 0
    return files


def _bf16_missing() -> str | None:
    if BF16_FLAGS & cpu_flags():
        return None
    return f"the CPU has none of {sorted(BF16_FLAGS)} (OpenVINO bf16 is refused without them, by design)"


def _target(backend: str, precision: str, request) -> Path:
    if precision == "int8":
        return request.getfixturevalue("int8_files")[backend]
    return SHIPPED / "model.onnx"


def assert_fp32_parity(run: Run, reference: Run) -> None:
    diff = np.abs(run.logits - reference.logits)
    assert run.logits.shape == reference.logits.shape
    assert diff.max() <= FP32_ATOL, f"fp32 logits differ from torch by up to {diff.max():.2e}"
    flipped = (run.logits > 0) != (reference.logits > 0)
    assert not (flipped & (np.abs(reference.logits) >= FP32_ATOL)).any(), "an fp32 mask pixel away from the threshold differs"
    assert abs(run.jf - reference.jf) <= 1e-4


def assert_low_precision_parity(run: Run, reference: Run) -> None:
    agreement = float(((run.logits > 0) == (reference.logits > 0)).mean())
    assert agreement >= LOW_PRECISION_AGREEMENT, f"only {agreement:.3f} of mask pixels agree with torch"
    assert abs(run.jf - reference.jf) <= LOW_PRECISION_JF, f"J&F {run.jf:.4f} vs torch {reference.jf:.4f}"


@pytest.mark.parametrize(("backend", "precision"), [
    ("onnxruntime", "fp32"), ("openvino", "fp32"),
    ("onnxruntime", "int8"), ("openvino", "int8"), ("openvino", "bf16"),
])
def test_engine_matches_torch(backend, precision, clips, reference, request):
    if precision == "bf16" and (missing := _bf16_missing()):
        pytest.skip(missing)
    engine = open_engine(_target(backend, precision, request), backend=f"{backend}:{precision}", device="cpu", threads=1)
    assert (engine.spec.backend, engine.spec.precision) == (backend, precision)
    run = _run(_engine_forward(engine), clips)
    engine.close()
    if precision == "fp32":
        assert_fp32_parity(run, reference)
    else:
        assert_low_precision_parity(run, reference)
        assert np.abs(run.logits - reference.logits).max() > FP32_ATOL  # it really ran in low precision


def test_the_checks_catch_a_backend_with_wrong_preprocessing(clips, reference):
    """The same checks on an engine fed BGR frames (a backend that forgot the colour order) fail."""
    engine = open_engine(SHIPPED / "model.onnx", backend="onnxruntime", device="cpu", threads=1)
    swapped = _run(lambda frames, audio: torch.from_numpy(engine.infer(frames.numpy()[..., ::-1].copy(), audio.numpy())), clips)
    engine.close()
    with pytest.raises(AssertionError):
        assert_fp32_parity(swapped, reference)
    with pytest.raises(AssertionError):
        assert_low_precision_parity(swapped, reference)

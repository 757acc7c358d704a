"""INT8 calibration: a Q/DQ graph ONNX Runtime runs, close to fp32, TensorRT-parsable; cached ranges reused."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import onnx
import pytest

from ddavs_rt.config import ModelConfig, load_config
import torch
from onnx import numpy_helper

from ddavs_rt.atomic import sha256_file
from ddavs_rt.calibration.clips import clip_samples, find_clips
from ddavs_rt.calibration.quantize import cache_path_for, calibrate_onnx, calibrator_options, nodes_in_scopes
from ddavs_rt.calibration.reader import ClipCalibrationReader
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.ort_backend import OrtEngine
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.engine.sidecar import read_onnx_sidecar
from ddavs_rt.engine.trt_ops import tensorrt_problems
from ddavs_rt.errors import DataError
from ddavs_rt.synth.writer import write_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "model" / "ddavs-tiny.yaml"


class CountingReader(ClipCalibrationReader):
    calls = 0

    def get_next(self):
        CountingReader.calls += 1
        return super().get_next()


SIZE = load_config(TINY, ModelConfig).input_size  # the graph's frame size


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("calib")
    checkpoint = write_random_checkpoint(TINY, root / "ckpt", seed=7)
    onnx_path = export_checkpoint(checkpoint, root / "tiny.onnx", batch=(1, 2))
    data = root / "synthavs"
    write_dataset(data, clips=2, seed=123)
    return onnx_path, data


def test_int8_model_runs_and_tracks_fp32_and_the_cache_is_reused(setup, tmp_path):
    onnx_path, data = setup
    cache_dir = tmp_path / "cache"
    CountingReader.calls = 0
    reader = CountingReader(data, SIZE, 16000, 16000, clips=2)
    out = calibrate_onnx(onnx_path, data, tmp_path / "tiny.int8.onnx", clips=2, method="minmax", reader=reader, cache_dir=cache_dir)
    assert CountingReader.calls == 2 * 5 + 1  # 5 samples per clip, then the end-of-data None

    model = onnx.load(str(out))
    op_types = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types
    zero_points = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")]
    assert zero_points and all(not zp.any() for zp in zero_points)  # symmetric: what TensorRT accepts
    assert tensorrt_problems(model) == []

    sidecar = read_onnx_sidecar(out)
    assert sidecar.precision == "int8" and sidecar.source_onnx_sha256 == sha256_file(onnx_path)
    assert sidecar.calibration["method"] == "minmax" and sidecar.calibration["cache_reused"] is False

    # logits on the representative samples: int8 follows fp32 (random weights give small logits,
    # so correlation, not absolute error, is the meaningful measure; sign agreement = mask agreement)
    frames, audio = map(np.stack, zip(*[s for c in find_clips(data) for s in clip_samples(c, 224, 16000, 16000)]))
    fp32 = OrtEngine(onnx_path, device="cpu", threads=1).infer(frames, audio)
    int8_engine = OrtEngine(out, device="cpu", threads=1)
    assert int8_engine.spec.precision == "int8"
    int8 = int8_engine.infer(frames, audio)
    assert np.corrcoef(fp32.ravel(), int8.ravel())[0, 1] > 0.9
    assert ((fp32 > 0) == (int8 > 0)).mean() > 0.95
    assert not np.array_equal(fp32, int8)  # it really is a different (quantized) graph

    # second run on the same ONNX: the cached ranges are used, the data reader is never called
    CountingReader.calls = 0
    again = calibrate_onnx(onnx_path, data, tmp_path / "again.int8.onnx", clips=2, method="minmax",
                           reader=CountingReader(data, SIZE, 16000, 16000, clips=2), cache_dir=cache_dir)
    assert CountingReader.calls == 0
    assert read_onnx_sidecar(again).calibration["cache_reused"] is True
    assert sha256_file(again) == sha256_file(out)


def test_front_end_and_classifier_stay_fp32(setup):
    onnx_path, _ = setup
    kept = nodes_in_scopes(onnx.load(str(onnx_path)))
    assert any("Conv" in name for name in kept)  # the STFT-as-convolution and the classifier conv
    assert 0 < len(kept) < 100


def _ranges(cache: Path) -> dict[str, float]:
    """tensor name -> symmetric range (max of |lowest|, |highest|) from onnxruntime's saved ranges."""
    data = json.loads(cache.read_text())["data"]
    def first(entry) -> float:  # saved as an array {"data": [x]} or a bare x, depending on the calibrator
        value = entry["data"] if isinstance(entry, dict) else entry
        return float(np.asarray(value, dtype=np.float64).ravel()[0])

    return {name: max(abs(first(v["lowest"])), abs(first(v["highest"]))) for name, v in data.items()}


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the KL search is pure Python: minutes on a loaded 2-core machine
def test_entropy_calibration_really_uses_the_kl_threshold(setup, tmp_path):
    """Entropy calibration clips each tensor at a KL-chosen threshold below its observed maximum;
    min-max takes the maximum. With onnxruntime's defaults (128 bins for 128 quantized bins) the
    KL search has one candidate and entropy silently equals min-max: this test catches that."""
    onnx_path, data = setup
    options = calibrator_options("entropy")
    assert options["num_bins"] > options["num_quantized_bins"]
    calibrate_onnx(onnx_path, data, tmp_path / "minmax.onnx", clips=1, method="minmax", cache_dir=tmp_path / "c")
    out = calibrate_onnx(onnx_path, data, tmp_path / "entropy.onnx", clips=1, method="entropy", cache_dir=tmp_path / "c")
    onnx_sha = sha256_file(onnx_path)
    minmax = _ranges(cache_path_for(onnx_path, onnx_sha, "minmax", tmp_path / "c"))
    entropy = _ranges(cache_path_for(onnx_path, onnx_sha, "entropy", tmp_path / "c"))
    assert read_onnx_sidecar(out).calibration["method"] == "entropy"
    common = sorted(set(minmax) & set(entropy))
    assert len(common) > 50
    # the min-max range is the observed maximum (the official definition): entropy never exceeds it
    # (one histogram bin of slack) and clips a share of the tensors below it (silently min-max: none;
    # measured 52 of 740 on one clip of this random-weights model)
    assert all(entropy[n] <= minmax[n] * (1 + 1 / options["num_bins"]) + 1e-6 for n in common)
    clipped = [n for n in common if entropy[n] < 0.98 * minmax[n]]
    assert len(clipped) >= len(common) // 20, f"only {len(clipped)} of {len(common)} tensors clipped"
    # and the quantized graph uses those thresholds: its activation scales differ from min-max's
    scales = {t.name: float(numpy_helper.to_array(t).ravel()[0]) for t in onnx.load(str(out)).graph.initializer
              if t.name.endswith("_scale") and numpy_helper.to_array(t).size == 1}
    ratios = [scales[f"{n}_scale"] * 127 / entropy[n] for n in common if f"{n}_scale" in scales and entropy[n] > 0]
    assert ratios and np.median(ratios) == pytest.approx(1.0, rel=0.01)


def test_a_folder_without_clips_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="ddavs-rt synth"):
        find_clips(tmp_path)

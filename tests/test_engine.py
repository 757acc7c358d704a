"""open_engine: backend choice, the infer() contract (resize, chunking, validation), torch vs onnxruntime."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.engine import open_engine
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.ort_backend import OrtEngine
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.engine.sidecar import read_onnx_sidecar, sidecar_path
from ddavs_rt.errors import CheckpointError, ConfigError
from support.cpu_rule import AUTO_CPU_BACKEND, AUTO_CPU_PRECISION

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "model" / "ddavs-tiny.yaml"
S = load_config(TINY, ModelConfig).input_size  # the graph's frame size


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("engine")
    checkpoint = write_random_checkpoint(TINY, root / "ckpt", seed=5)
    onnx_path = export_checkpoint(checkpoint, root / "exports" / "tiny.onnx", batch=(1, 2))
    return checkpoint, onnx_path


def _inputs(batch, height, width, seed=0, samples=16000):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    audio = (rng.random((batch, samples), dtype=np.float32) * 2 - 1) * 0.5
    return frames, audio


def test_auto_picks_torch_for_a_bare_checkpoint_then_onnxruntime_once_exported(built, tmp_path, caplog):
    checkpoint, onnx_path = built
    bare = shutil.copytree(checkpoint, tmp_path / "ckpt")
    caplog.set_level(logging.INFO, logger="ddavs_rt.engine.open")
    engine = open_engine(bare, device="cpu", export=False, cache=tmp_path / "cache")
    assert engine.spec.backend == "torch" and engine.spec.precision == "fp32"
    assert "backend auto -> torch" in caplog.text
    # an export made from this checkpoint, beside it, is found by model_id (not by name), and said so
    shutil.copy(onnx_path, bare / "whatever.onnx")
    shutil.copy(sidecar_path(onnx_path), sidecar_path(bare / "whatever.onnx"))
    caplog.clear()
    engine = open_engine(bare, device="cpu", export=False, cache=tmp_path / "cache")
    assert engine.spec.backend == AUTO_CPU_BACKEND  # onnxruntime; openvino bf16 on an AMX CPU
    assert engine.path == bare / "whatever.onnx"
    assert "whatever.onnx" in engine.choice.reason and "in the checkpoint folder" in engine.choice.reason
    # a sibling file (beside the folder, not in it) the user did not name: run, but said as a warning
    (bare / "whatever.onnx").rename(tmp_path / "sibling.onnx")
    sidecar_path(bare / "whatever.onnx").rename(sidecar_path(tmp_path / "sibling.onnx"))
    caplog.clear()
    engine = open_engine(bare, device="cpu", export=False, cache=tmp_path / "cache")
    assert engine.path == tmp_path / "sibling.onnx" and engine.choice.named is False
    assert any(r.levelno == logging.WARNING and "sibling.onnx" in r.getMessage() for r in caplog.records)


def test_an_export_of_another_checkpoint_is_not_picked(built, tmp_path):
    checkpoint, onnx_path = built
    other = write_random_checkpoint(TINY, tmp_path / "other", seed=99)
    shutil.copy(onnx_path, other / "tiny.onnx")
    shutil.copy(sidecar_path(onnx_path), sidecar_path(other / "tiny.onnx"))
    assert open_engine(other, device="cpu", export=False, cache=tmp_path / "cache").spec.backend == "torch"
    with pytest.raises(CheckpointError, match="ddavs-rt export --checkpoint"):
        open_engine(other, backend="onnxruntime", device="cpu", cache=tmp_path / "cache")


def test_spec_describes_the_model(built):
    _, onnx_path = built
    spec = open_engine(onnx_path, device="cpu").spec
    assert spec.input_size == (S, S)
    assert (spec.sample_rate, spec.window_samples) == (16000, 16000)
    assert spec.class_names == ("background", "sounding") and spec.num_classes == 1
    assert (spec.batch_min, spec.batch_max) == (1, 2)
    assert (spec.backend, spec.device, spec.precision) == (AUTO_CPU_BACKEND, "cpu", AUTO_CPU_PRECISION)
    assert spec.model_id == read_onnx_sidecar(onnx_path).model_id


def test_torch_and_onnxruntime_agree_through_open_engine(built):
    checkpoint, onnx_path = built
    frames, audio = _inputs(2, 224, 224, seed=1)
    a = open_engine(checkpoint, backend="torch", device="cpu").infer(frames, audio)
    b = open_engine(onnx_path, backend="onnxruntime", device="cpu").infer(frames, audio)
    assert np.abs(a - b).max() <= 1e-3


def test_onnxruntime_spinning_is_off_unless_asked_for_and_results_agree(built):
    """Spinning intra-op threads take the cores the streaming pipeline's own threads need
    (docs/results/batching.md): off by default, on only when asked for, same logits either way."""
    _, onnx_path = built
    frames, audio = _inputs(2, S, S, seed=2)
    quiet = open_engine(onnx_path, backend="onnxruntime", device="cpu")
    spinning = open_engine(onnx_path, backend="onnxruntime", device="cpu", spinning=True)

    def entry(engine):
        return engine.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert (entry(quiet), entry(spinning)) == ("0", "1")
    assert np.array_equal(quiet.infer(frames, audio), spinning.infer(frames, audio))


def test_other_frame_sizes_are_resized_with_cv2_before_the_graph(built):
    _, onnx_path = built
    engine = OrtEngine(onnx_path, device="cpu", threads=1)
    frames, audio = _inputs(1, 180, 320, seed=2)
    got = engine.infer(frames, audio)
    assert got.shape == (1, 1, S, S)
    resized = cv2.resize(frames[0], (S, S), interpolation=cv2.INTER_AREA)[None]
    assert np.abs(got - engine.infer(resized, audio)).max() <= 1e-6


def test_a_batch_beyond_the_engine_max_is_split_into_chunks(built):
    _, onnx_path = built
    engine = OrtEngine(onnx_path, device="cpu", threads=1)  # batch 1-2
    frames, audio = _inputs(5, 224, 224, seed=3)
    whole = engine.infer(frames, audio)
    assert whole.shape == (5, 1, S, S)
    singles = np.concatenate([engine.infer(frames[i : i + 1], audio[i : i + 1]) for i in range(5)])
    assert np.abs(whole - singles).max() <= 1e-5
    assert engine.infer(frames[:0], audio[:0]).shape == (0, 1, S, S)


@pytest.mark.parametrize(
    "frames_shape, frames_dtype, audio_shape, message",
    [
        ((1, 224, 224), np.uint8, (1, 16000), r"\[B, H, W, 3\]"),
        ((1, 224, 224, 3), np.float32, (1, 16000), "uint8"),
        ((1, 224, 224, 3), np.uint8, (1, 8000), "16000 samples"),
        ((2, 224, 224, 3), np.uint8, (1, 16000), "batch sizes differ"),
    ],
)
def test_bad_inputs_are_refused_with_what_was_expected(built, frames_shape, frames_dtype, audio_shape, message):
    _, onnx_path = built
    engine = OrtEngine(onnx_path, device="cpu", threads=1)
    with pytest.raises(ValueError, match=message):
        engine.infer(np.zeros(frames_shape, frames_dtype), np.zeros(audio_shape, np.float32))


def test_wrong_paths_and_backends_give_one_line_errors(built, tmp_path):
    checkpoint, onnx_path = built
    with pytest.raises(CheckpointError, match="not found"):
        open_engine(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="torch backend runs a checkpoint folder"):
        open_engine(onnx_path, backend="torch")
    with pytest.raises(CheckpointError, match="no TensorRT engine built from it"):
        open_engine(onnx_path, backend="tensorrt")
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(onnx_path, lonely)
    with pytest.raises(CheckpointError, match="sidecar not found"):
        open_engine(lonely, device="cpu")
    stale = tmp_path / "stale.onnx"
    shutil.copy(onnx_path, stale)
    data = json.loads(sidecar_path(onnx_path).read_text())
    data["format_version"] = 0
    sidecar_path(stale).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="format version 0"):
        open_engine(stale, device="cpu")

"""Every model config under configs/model/ (random weights), on the paths a GPU would take:

- the exported graph follows the documented rules of TensorRT's ONNX parser
  (ddavs_rt.engine.trt_ops; the export itself refuses a graph that breaks them);
- fp16: torch autocast, torch `.half()`, and the ONNX fp16 conversion the TensorRT build uses
  (`ddavs_rt.calibration.tensorrt_build.fp16_model`, run here in ONNX Runtime) all give finite
  logits on silence, a full-scale 1 kHz tone and full-scale noise, and agree with fp32 on SynthAVS
  clips within the tolerances below.

Tolerances (fp16 against fp32 logits on SynthAVS frames + audio): the largest difference at most
FP16_REL of the fp32 logits' range (max - min), and the sign (the mask) the same on at least
FP16_MASK of the pixels whose fp32 logit is not within 2% of the range of zero. Random weights
give logits with little margin, so the mask test skips pixels sitting on the threshold.

The B5 configs are large (export plus the three fp16 paths take about 5 minutes each on 2 cores,
25 minutes for the five): they are marked `heavy`, which the default run deselects to keep the
suite well under 30 minutes on a 2-core CI machine. Run them with `pytest -m heavy
tests/test_model_configs_gpu.py` (on 2026-12-03 ddavs-b5-htsat, ddavs-b5-vggish and ddeseg-b5-htsat passed;
sdavs-b5-htsat was not run to its end). The tiny configs run by default; the HTSAT and VGGish
front-ends' fp16 safety is also tested on its own in tests/test_fp16_frontend.py.

Each config is built and exported once (`built`, a module-scoped fixture over the configs) and
its three checks share that export and model; configs that are the same model apart from their
name (ablation/tiny-full and ablation/tiny-pos-34) share one export, since their random weights
(seed 0) and graph are the same. The export (torch.export plus the ONNX optimizer) is about 75 %
of a config's time."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ddavs_rt.calibration.clips import clip_samples, find_clips
from ddavs_rt.calibration.tensorrt_build import fp16_model, front_end_nodes
from ddavs_rt.config import ModelConfig, load_config
from ddavs_rt.engine.export import export_checkpoint
from ddavs_rt.engine.random_weights import write_random_checkpoint
from ddavs_rt.engine.trt_ops import tensorrt_problems
from ddavs_rt.model.checkpoint import load_checkpoint
from ddavs_rt.synth.writer import write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "model").rglob("*.yaml"))
FP16_REL = {"autocast": 0.02, "half": 0.05, "onnx": 0.02}
FP16_MASK = 0.98


def _param(path: Path):
    marks = [pytest.mark.slow, pytest.mark.heavy] if "b5" in path.stem else []
    return pytest.param(path, id=str(path.relative_to(ROOT / "configs" / "model")), marks=marks)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthavs")
    write_dataset(root, clips=2, seed=11)
    return root


def stress_audio(samples: int, rate: int) -> np.ndarray:
    """Silence, a full-scale 1 kHz tone, full-scale uniform noise: [3, samples] float32."""
    t = np.arange(samples) / rate
    noise = np.random.default_rng(5).uniform(-1, 1, samples)
    return np.stack([np.zeros(samples), np.sin(2 * math.pi * 1000 * t), noise]).astype(np.float32)


def inputs(cfg: ModelConfig, synth_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(SynthAVS frames, SynthAVS audio) of 4 samples, and (frames, stress audio) of 3."""
    samples = [s for clip in find_clips(synth_root) for s in list(clip_samples(clip, cfg.input_size, cfg.sample_rate, cfg.window_samples))[::3]][:4]
    frames, audio = map(np.stack, zip(*samples))
    return frames, audio, frames[:3], stress_audio(cfg.window_samples, cfg.sample_rate)


def assert_agrees(got: np.ndarray, ref: np.ndarray, rel: float, what: str) -> None:
    assert np.isfinite(got).all(), f"{what}: non-finite logits"
    span = float(ref.max() - ref.min())
    assert span > 0, f"{what}: fp32 logits are constant"
    worst = float(np.abs(got - ref).max())
    assert worst <= rel * span, f"{what}: max |fp16 - fp32| {worst:.4g} > {rel} x range {span:.4g}"
    decided = np.abs(ref) > 0.02 * span
    if decided.sum() > 100:
        same = float(((got > 0) == (ref > 0))[decided].mean())
        assert same >= FP16_MASK, f"{what}: mask agreement {same:.4f} < {FP16_MASK}"


def test_every_config_is_listed():
    assert len(CONFIGS) >= 16 and any("htsat" in p.stem for p in CONFIGS)


def config_key(path: Path) -> str:
    """The model a config builds, without its name: configs with equal keys give the same export."""
    fields = load_config(path, ModelConfig).model_dump(mode="json")
    fields.pop("name")
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


@dataclass
class Built:
    """One config's random-weight model, its export and the fp32 reference logits."""

    model: torch.nn.Module
    cfg: ModelConfig
    proto: onnx.ModelProto
    frames: np.ndarray
    audio: np.ndarray
    stress_frames: np.ndarray
    stress: np.ndarray
    ref: np.ndarray  # fp32 logits on the SynthAVS inputs
    ref_stress: np.ndarray  # fp32 logits on silence, tone and noise


_EXPORTS: dict[str, tuple[Path, Path]] = {}  # config_key -> (checkpoint, export)


@pytest.fixture(scope="module", params=[_param(p) for p in CONFIGS])
def built(request, tmp_path_factory, synth_root) -> Built:
    torch.set_num_threads(1)
    config: Path = request.param
    key = config_key(config)
    if key not in _EXPORTS:
        folder = tmp_path_factory.mktemp(config.stem)
        checkpoint = write_random_checkpoint(config, folder / "ckpt", seed=0)
        # the export refuses a graph that breaks TensorRT's parser rules (TensorRTRulesError)
        _EXPORTS[key] = checkpoint, export_checkpoint(checkpoint, folder / "m.onnx", batch=(1, 4))
    checkpoint, exported = _EXPORTS[key]
    model, cfg = load_checkpoint(checkpoint)
    model = model.eval()
    frames, audio, stress_frames, stress = inputs(cfg, synth_root)
    with torch.no_grad():
        ref = model(torch.from_numpy(frames), torch.from_numpy(audio)).numpy()
        ref_stress = model(torch.from_numpy(stress_frames), torch.from_numpy(stress)).numpy()
    return Built(model, cfg, onnx.load(str(exported)), frames, audio, stress_frames, stress, ref, ref_stress)


def test_export_follows_tensorrt_parser_rules(built):
    proto = built.proto
    assert tensorrt_problems(proto) == []
    graph = onnx.shape_inference.infer_shapes(proto).graph
    outputs = {v.name for v in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    made = [name for node in graph.node for name in node.output if name and name not in outputs]
    assert len(made) > 50 and sum(name in types for name in made) > 0.9 * len(made)  # the types were seen
    assert [n.op_type for n in graph.node if "frames" in n.input] == ["Cast"]
    assert not [name for name in made if types.get(name) == onnx.TensorProto.UINT8]


def test_torch_fp16_autocast_and_half(built):
    torch.set_num_threads(1)
    model, frames, audio = built.model, torch.from_numpy(built.frames), torch.from_numpy(built.audio)
    stress_frames, stress = torch.from_numpy(built.stress_frames), torch.from_numpy(built.stress)
    assert np.isfinite(built.ref_stress).all()
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.float16):
            auto = model(frames, audio).float().numpy()
            auto_stress = model(stress_frames, stress).float().numpy()
        half_model = copy.deepcopy(model).half()
        half = half_model(frames, audio.half()).float().numpy()
        half_stress = half_model(stress_frames, stress.half()).float().numpy()
    assert_agrees(auto, built.ref, FP16_REL["autocast"], "autocast fp16")
    assert_agrees(half, built.ref, FP16_REL["half"], ".half()")
    assert np.isfinite(auto_stress).all() and np.isfinite(half_stress).all()


def test_onnx_fp16_conversion_of_the_tensorrt_build(built):
    """The ONNX fp16 conversion of the TensorRT build, run in ONNX Runtime."""
    assert front_end_nodes(built.proto)
    converted, _ = fp16_model(built.proto)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(converted.SerializeToString(), options, providers=["CPUExecutionProvider"])
    onnx16 = session.run(None, {"frames": built.frames, "audio": built.audio})[0]
    onnx16_stress = session.run(None, {"frames": built.stress_frames, "audio": built.stress})[0]
    assert_agrees(onnx16, built.ref, FP16_REL["onnx"], "ONNX fp16")
    assert np.isfinite(onnx16_stress).all()

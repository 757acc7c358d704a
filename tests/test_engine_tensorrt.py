"""TensorRT: staleness checks, timing-cache keys and precision plans as pure functions; the
missing-TensorRT error; a real build where TensorRT and a GPU exist (skipped otherwise)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from ddavs_rt.cli import main as cli_main
from ddavs_rt.engine.sidecar import (
    OnnxSidecar, TensorInfo, TensorRTSidecar, check_tensorrt_sidecar, read_tensorrt_sidecar,
    rebuild_command, tensorrt_mismatch, write_sidecar,
)
from ddavs_rt.engine.tensorrt_backend import TENSORRT_MISSING, import_tensorrt
from ddavs_rt.calibration.tensorrt_build import (
    load_timing_cache_bytes, precision_plan, save_timing_cache_bytes, timing_cache_key,
)
from ddavs_rt.errors import CheckpointError, ConfigError, DdavsError

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _engine_sidecar(**changes) -> TensorRTSidecar:
    onnx = OnnxSidecar(
        model_id="ddavs-tiny@abc", config={"name": "ddavs-tiny"}, checkpoint_sha256="c" * 64, opset=18,
        inputs=[TensorInfo(name="frames", dtype="uint8", shape=["batch", 224, 224, 3])],
        outputs=[TensorInfo(name="mask_logits", dtype="float32", shape=["batch", 1, 224, 224])],
        batch_min=1, batch_max=8, exporter="torch 2.11.0 (dynamo)",
    )
    fields = dict(onnx=onnx, onnx_path="/models/tiny.onnx", onnx_sha256="o" * 64, checkpoint_sha256="c" * 64,
                  precision="fp16", tensorrt_version="10.15.1", gpu_name="NVIDIA H100 80GB HBM3",
                  compute_capability="9.0", cuda_version="13.0", batch_min=1, batch_opt=8, batch_max=8)
    fields.update(changes)
    return TensorRTSidecar(**fields)


HERE = dict(gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", tensorrt_version="10.15.1")


def test_an_engine_matching_this_machine_is_accepted():
    sidecar = _engine_sidecar()
    assert tensorrt_mismatch(sidecar, **HERE) is None
    assert tensorrt_mismatch(sidecar, **HERE, checkpoint_sha256="c" * 64) is None
    check_tensorrt_sidecar(sidecar, "/models/e.engine", **HERE)  # no raise


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"tensorrt_version": "10.14.0"}, "built with TensorRT 10.14.0, this machine has TensorRT 10.15.1"),
        ({"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}, "built for NVIDIA L4 (compute 8.9)"),
        ({"checkpoint_sha256": "d" * 64}, "built from checkpoint dddddddddddd"),
    ],
)
def test_a_stale_engine_is_refused_with_the_rebuild_command(changes, expected):
    sidecar = _engine_sidecar(**changes)
    reason = tensorrt_mismatch(sidecar, **HERE, checkpoint_sha256="c" * 64)
    assert reason is not None and expected in reason
    with pytest.raises(CheckpointError) as info:
        check_tensorrt_sidecar(sidecar, "/models/e.engine", **HERE, checkpoint_sha256="c" * 64)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith("rebuild it: ddavs-rt build-engine --onnx /models/tiny.onnx --precision fp16 --out /models/e.engine")


def test_rebuild_command_quotes_paths_with_spaces():
    command = rebuild_command(_engine_sidecar(onnx_path="/my models/t.onnx", precision="int8"), "/out dir/e.engine")
    assert command == "ddavs-rt build-engine --onnx '/my models/t.onnx' --precision int8 --out '/out dir/e.engine'"


def test_tensorrt_sidecar_round_trips_through_its_file(tmp_path):
    engine = tmp_path / "tiny_b8_h100_fp16.engine"
    engine.write_bytes(b"not really an engine")
    write_sidecar(engine, _engine_sidecar())
    assert read_tensorrt_sidecar(engine) == _engine_sidecar()
    data = json.loads((tmp_path / "tiny_b8_h100_fp16.engine.json").read_text())
    assert data["kind"] == "tensorrt" and data["gpu_name"] == "NVIDIA H100 80GB HBM3"


def test_timing_cache_is_reused_only_when_its_key_matches(tmp_path):
    cache = tmp_path / "trt.cache"
    key = timing_cache_key(gpu_name="H100", compute_capability="9.0", cuda_version="13.0",
                           tensorrt_version="10.15.1", precision="fp16")
    assert load_timing_cache_bytes(cache, key) == b""  # nothing yet
    save_timing_cache_bytes(cache, b"tactics", key)
    assert load_timing_cache_bytes(cache, key) == b"tactics"
    for field, value in [("precision", "int8"), ("tensorrt_version", "10.14.0"), ("cuda_version", "12.8"),
                         ("gpu_name", "L4")]:
        assert load_timing_cache_bytes(cache, {**key, field: value}) == b""
    assert load_timing_cache_bytes(None, key) == b""


def test_precision_plans_by_tensorrt_version():
    weak = precision_plan("fp16", "fp32", "10.11.0.33")  # flags; the front-end layers pinned to fp32
    assert weak == {"strongly_typed": False, "flags": ["FP16", "OBEY_PRECISION_CONSTRAINTS"], "convert_fp16": False,
                    "keep_qdq": False, "fp32_front_end": True}
    assert precision_plan("int8", "int8", 10)["flags"] == ["INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert precision_plan("fp32", "fp32", "10.0.1")["flags"] == []
    # 10.12+: FP16/INT8 flags deprecated, strongly typed; 11: strongly typed only
    for version in ("10.12.0.36", "10.16.0", "11.0.0", "11.1"):
        assert precision_plan("fp16", "fp32", version) == {"strongly_typed": True, "flags": [], "convert_fp16": True,
                                                            "keep_qdq": False, "fp32_front_end": False}
        int8 = precision_plan("int8", "int8", version)  # fp16 outside the Q/DQ nodes, not fp32
        assert int8["strongly_typed"] and int8["convert_fp16"] and int8["keep_qdq"]
        assert precision_plan("fp16", "fp16", version)["convert_fp16"] is False
        assert precision_plan("fp32", "fp32", version)["convert_fp16"] is False
    with pytest.raises(ConfigError, match="ddavs-rt calibrate"):
        precision_plan("int8", "fp32", 10)
    with pytest.raises(ConfigError, match="--precision int8"):
        precision_plan("fp16", "int8", 11)


class _FakeTensor:
    def __init__(self, dtype):
        self.dtype = dtype


class _FakeLayer:
    def __init__(self, name, dtypes):
        self.name, self.precision, self._outputs, self.set_types = name, None, [_FakeTensor(d) for d in dtypes], {}

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_output(self, index):
        return self._outputs[index]

    def set_output_type(self, index, dtype):
        self.set_types[index] = dtype


def test_weakly_typed_builds_pin_the_front_end_layers_to_fp32():
    """A test double of the `tensorrt` module and its network (TensorRT is not installable here)."""
    from types import SimpleNamespace

    from ddavs_rt.calibration.tensorrt_build import pin_layers_fp32

    trt = SimpleNamespace(float32="f32", float16="f16", int64="i64")
    layers = [_FakeLayer("node_Conv_64", ["f16"]), _FakeLayer("node_Shape_3", ["i64"]), _FakeLayer("node_MatMul_9", ["f16"])]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    assert pin_layers_fp32(trt, network, {"node_Conv_64", "node_Shape_3"}) == 2
    assert layers[0].precision == "f32" and layers[0].set_types == {0: "f32"}
    assert layers[1].precision == "f32" and layers[1].set_types == {}  # an int64 output keeps its type
    assert layers[2].precision is None  # not the front-end


def test_int8_qdq_graph_to_fp16_keeps_the_qdq_nodes_and_the_front_end_fp32():
    """The strongly typed int8 build's ONNX: fp16 everywhere outside the Q/DQ nodes (and the
    audio front-end), on a small Q/DQ graph built by hand, run in ONNX Runtime."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ddavs_rt.calibration.tensorrt_build import fp16_model

    rng = np.random.default_rng(0)
    weight = np.clip(np.round(rng.normal(0, 40, (4, 2, 3, 3))), -127, 127).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
             numpy_helper.from_array(weight, "w_q"),
             numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "bias")]
    front = helper.make_node("Mul", ["x", "two"], ["f"], name="front_mul")
    front.metadata_props.add(key="pkg.torch.onnx.class_hierarchy", value="['m', 'ddavs_rt.model.frontend.LogMel', 'aten.mul']")
    nodes = [front,
             helper.make_node("QuantizeLinear", ["f", "x_scale", "x_zero"], ["fq"], name="q"),
             helper.make_node("DequantizeLinear", ["fq", "x_scale", "x_zero"], ["fd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="w_dq", axis=0),
             helper.make_node("Conv", ["fd", "w", "bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    converted, _ = fp16_model(model, keep_qdq=True)
    onnx.checker.check_model(converted)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(converted).graph.value_info}
    by_name = {n.name: n for n in converted.graph.node}
    assert {"q", "dq", "w_dq", "front_mul"} <= set(by_name)  # Q/DQ kept, not folded away
    assert types[by_name["dq"].output[0]] == TensorProto.FLOAT and types[by_name["front_mul"].output[0]] == TensorProto.FLOAT
    conv_in = by_name["conv"].input[0]
    assert types[conv_in] == TensorProto.FLOAT16 and types[by_name["conv"].output[0]] == TensorProto.FLOAT16

    x = rng.normal(0, 0.5, (1, 2, 6, 6)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
    ref, got = run(model), run(converted)
    assert np.abs(got - ref).max() <= 0.01 * (np.abs(ref).max() + 1e-6)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_build_engine_fails_in_one_line(tmp_path, capsys):
    with pytest.raises(DdavsError) as info:
        import_tensorrt()
    assert str(info.value) == TENSORRT_MISSING
    code = cli_main(["build-engine", "--onnx", str(tmp_path / "m.onnx"), "--precision", "fp16"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"ddavs-rt: error: {TENSORRT_MISSING}"


def test_real_tensorrt_build_and_run(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed: pip install ddavs-rt[tensorrt] on a machine with an NVIDIA GPU")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs an NVIDIA GPU")
    import numpy as np

    from ddavs_rt.engine import open_engine
    from ddavs_rt.engine.export import export_checkpoint
    from ddavs_rt.engine.random_weights import write_random_checkpoint
    from ddavs_rt.calibration.tensorrt_build import build_engine

    tiny = Path(__file__).resolve().parents[1] / "configs" / "model" / "ddavs-tiny.yaml"
    checkpoint = write_random_checkpoint(tiny, tmp_path / "ckpt")
    onnx_path = export_checkpoint(checkpoint, tmp_path / "tiny.onnx", batch=(1, 4))
    engine_path = build_engine(onnx_path, "fp32", tmp_path / "tiny.engine", timing_cache=tmp_path / "trt.cache")
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 16000)).astype(np.float32)
    got = open_engine(engine_path, backend="tensorrt").infer(frames, audio)
    expected = open_engine(onnx_path, backend="onnxruntime", device="cpu").infer(frames, audio)
    assert np.abs(got - expected).max() <= 1e-2


def test_inference_runs_under_the_engines_device_in_the_calling_thread(monkeypatch):
    """An engine on cuda:1 called from another thread (the scheduler's) executes with cuda:1 as the
    thread's current device. No GPU here: the CUDA device switch and the engine's TensorRT context
    are test doubles; what is checked is that execute happens inside the device guard, per thread."""
    import threading

    import numpy as np
    import torch

    from ddavs_rt.engine.tensorrt_backend import TensorRTEngine

    current = threading.local()
    seen = []

    class DeviceGuard:
        def __init__(self, device):
            self.device = torch.device(device)

        def __enter__(self):
            self.previous = getattr(current, "device", "cuda:0")
            current.device = str(self.device)

        def __exit__(self, *exc):
            current.device = self.previous

    engine = object.__new__(TensorRTEngine)
    engine._torch = torch
    engine.device = torch.device("cuda", 1)

    def run_on_device(frames, audio):
        seen.append((threading.current_thread().name, getattr(current, "device", "cuda:0")))
        return np.zeros((len(frames), 1, 2, 2), np.float32)

    engine._run_on_device = run_on_device
    monkeypatch.setattr(torch.cuda, "device", DeviceGuard)
    worker = threading.Thread(target=engine._run, args=(np.zeros((1, 2, 2, 3), np.uint8), np.zeros((1, 4), np.float32)),
                              name="scheduler")
    worker.start()
    worker.join(30)
    assert seen == [("scheduler", "cuda:1")]

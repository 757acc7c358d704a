"""TensorRT's ONNX parser rules as a graph check (ddavs_rt.engine.trt_ops): the rules catch what
the parser refuses, on small hand-built graphs, and `ddavs-rt export` refuses such a graph in one line.

The expected verdicts come from the parser's documentation and source (onnx-tensorrt
docs/operators.md, TensorRT 10.15 edition; ModelImporter.cpp's uint8 check), not from our code."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ddavs_rt.engine.export import TensorRTRulesError, check_graph_for_tensorrt, move_shape_reads_off_uint8_inputs
from ddavs_rt.engine.trt_ops import load_tensorrt_ops, parse_rules, problems_line, tensorrt_problems


def _model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _frames_graph(cast_first: bool):
    """uint8 [B, H, W, 3] -> float [B, 3, H, W], the two orders of FramePreprocess's first two steps."""
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["B", 4, 4, 3])
    out = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, 4, 4])
    if cast_first:
        nodes = [helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT, name="cast"),
                 helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2], name="permute")]
    else:
        nodes = [helper.make_node("Transpose", ["frames"], ["t"], perm=[0, 3, 1, 2], name="permute"),
                 helper.make_node("Cast", ["t"], ["x"], to=TensorProto.FLOAT, name="cast")]
    return _model(nodes, [frames], [out])


def test_a_uint8_transpose_inside_the_graph_is_caught():
    problems = tensorrt_problems(_frames_graph(cast_first=False))
    # ModelImporter.cpp: a non-Constant node making a UINT8 tensor that is not a graph output
    assert any("'permute' (Transpose) makes UINT8 tensor 't' inside the graph" in p for p in problems), problems
    # operators.md: Transpose takes FP32, FP16, BF16, INT32, INT64, BOOL (no UINT8)
    assert any("'permute' (Transpose): UINT8 tensor 'frames'" in p for p in problems), problems
    assert tensorrt_problems(_frames_graph(cast_first=True)) == []


def test_uint8_is_fine_as_a_graph_output():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [2])
    model = _model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)], [x], [y])
    assert tensorrt_problems(model) == []


def test_a_shape_read_of_the_uint8_input_is_caught_and_moved_onto_its_cast():
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, ["B", 4, 4, 3])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B"])
    nodes = [  # the dynamo exporter's batch-size read comes before the cast
        helper.make_node("Shape", ["frames"], ["s"], start=0, end=1, name="batch"),
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        helper.make_node("Concat", ["s", "minus1"], ["shape"], axis=0),
        helper.make_node("ReduceSum", ["r", "axes"], ["y"], keepdims=0),
    ]
    inits = [numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    graph = helper.make_graph(nodes, "g", [frames], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    problems = tensorrt_problems(model)
    assert any("'batch' (Shape): UINT8 tensor 'frames'" in p for p in problems), problems

    data = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"frames": data})[0]
    assert move_shape_reads_off_uint8_inputs(model) == 1
    onnx.checker.check_model(model)
    assert tensorrt_problems(model) == []
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"frames": data})[0]
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(after, data.reshape(2, -1).astype(np.float32).sum(1))


def _one(op, inputs, attrs=None, initializers=(), outputs=("y",), in_type=TensorProto.FLOAT, opset=18):
    x = helper.make_tensor_value_info("x", in_type, [1, 2, 4, 4])
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, []) for name in outputs]
    node = helper.make_node(op, list(inputs), list(outputs), name="n", **(attrs or {}))
    return _model([node], [x], outs, initializers, opset)


def test_attribute_and_constant_restrictions_from_the_support_matrix():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    ok = _one("Resize", ["x", "", "scales"], {"mode": "linear"}, [scales])
    assert tensorrt_problems(ok) == []
    # Resize: "Antialiasing is not supported", modes nearest/linear only
    assert any("antialias=1" in p for p in tensorrt_problems(_one("Resize", ["x", "", "scales"], {"mode": "linear", "antialias": 1}, [scales])))
    assert any("mode='cubic'" in p for p in tensorrt_problems(_one("Resize", ["x", "", "scales"], {"mode": "cubic"}, [scales])))
    # LayerNormalization: "Only the first output Y is supported"
    ln_w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    assert tensorrt_problems(_one("LayerNormalization", ["x", "w"], {}, [ln_w])) == []
    ln_two = _one("LayerNormalization", ["x", "w"], {}, [ln_w], outputs=("y", "mean"))
    assert any("outputs ['mean'] are unsupported" in p for p in tensorrt_problems(ln_two))
    # Reduce*: "axes must be an initializer"
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    dynamic_axes = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="n")], [x, axes], [y])
    assert any("must be a build-time constant" in p for p in tensorrt_problems(dynamic_axes))
    const_axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    assert tensorrt_problems(_one("ReduceMean", ["x", "axes"], {}, [const_axes])) == []
    # MaxPool: 2D/3D only, dilations all ones
    assert tensorrt_problems(_one("MaxPool", ["x"], {"kernel_shape": [2, 2]})) == []
    assert any("dilations=[2, 2]" in p for p in tensorrt_problems(_one("MaxPool", ["x"], {"kernel_shape": [2, 2], "dilations": [2, 2]})))


def test_quantize_zero_points_must_be_zero():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])

    def qdq(zero: int):
        zp = numpy_helper.from_array(np.array(zero, np.int8), "zp")
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="q"),
                 helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dq")]
        return _model(nodes, [x], [y], [scale, zp])

    assert tensorrt_problems(qdq(0)) == []
    problems = tensorrt_problems(qdq(3))
    assert any("'q' (QuantizeLinear): input 2 ('zp') must be zero" in p for p in problems)
    assert any("'dq' (DequantizeLinear): input 2 ('zp') must be zero" in p for p in problems)


def test_types_outside_an_operators_list_are_caught():
    # MatMul takes FP32, FP16, BF16: an INT32 MatMul is refused
    a = helper.make_tensor_value_info("a", TensorProto.INT32, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [2, 2])
    model = _model([helper.make_node("MatMul", ["a", "a"], ["y"], name="mm")], [a], [y])
    assert any("'mm' (MatMul): INT32 tensor 'a'" in p for p in tensorrt_problems(model))
    # DequantizeLinear takes INT8, FP8, FP4, INT4: an INT32 (bias-style) DequantizeLinear is refused
    b = numpy_helper.from_array(np.array([5, 7], np.int32), "b")
    s = numpy_helper.from_array(np.array(0.5, np.float32), "s")
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    dq = _model([helper.make_node("DequantizeLinear", ["b", "s"], ["d"], name="dq"),
                 helper.make_node("Add", ["x", "d"], ["y"])], [x], [out], [b, s])
    assert any("'dq' (DequantizeLinear): INT32 tensor 'b'" in p for p in tensorrt_problems(dq))


def test_opset_outside_the_oldest_editions_range_is_caught():
    rules = load_tensorrt_ops()
    assert (rules.opset_min, rules.opset_max) == (9, 20)  # TensorRT 10.0: opset 9 to 20 (operators.md)
    model = _one("Relu", ["x"], opset=21)
    assert any(p.startswith("opset 21 is outside") for p in tensorrt_problems(model))
    assert tensorrt_problems(_one("Relu", ["x"], opset=20)) == []


def test_unsupported_and_newer_operators_are_caught():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    model = _model([helper.make_node("Unique", ["x"], ["y"])], [x], [y])
    assert any("Unique is not supported" in p for p in tensorrt_problems(model))
    # RMSNormalization was added in TensorRT 10.15 (docs/Changelog.md); the project supports 10.0+
    rms = helper.make_graph([helper.make_node("RMSNormalization", ["x", "w"], ["y"], name="rms")], "g", [x], [y],
                            initializer=[numpy_helper.from_array(np.ones(4, np.float32), "w")])
    model = helper.make_model(rms, opset_imports=[helper.make_opsetid("", 23)])
    assert any("RMSNormalization needs TensorRT 10.15+" in p for p in tensorrt_problems(model))


def test_rules_data_names_its_sources_and_every_check_kind_is_known():
    data = json.loads(resources.files("ddavs_rt.engine").joinpath("tensorrt_onnx_ops.json").read_text())
    rules = parse_rules(data)
    assert rules.operators_edition == "10.15" and rules.oldest_edition == "10.0"
    assert all("onnx/onnx-tensorrt" in source for source in rules.sources)
    assert any(source.endswith("ModelImporter.cpp") for source in rules.sources)
    assert not rules.supported & rules.unsupported
    for name in ("Cast", "Conv", "MatMul", "LayerNormalization", "Resize", "Log"):
        assert name in rules.supported
    uint8 = onnx.TensorProto.UINT8
    assert {name for name, rule in rules.operators.items() if uint8 in rule.types} == {"Cast", "CastLike"}
    data["operators"]["Relu"]["checks"] = [{"kind": "no-such-kind"}]
    with pytest.raises(ValueError, match="unknown check kind"):
        tensorrt_problems(_one("Relu", ["x"]), parse_rules(data))


def test_problems_line_is_one_line():
    problems = tensorrt_problems(_frames_graph(cast_first=False))
    line = problems_line(problems)
    assert "\n" not in line and line.count("more)") == 1 and "TensorRT 10.0-11.x" in line


def test_export_refuses_a_graph_that_breaks_the_rules_in_one_line(tmp_path, caplog):
    bad = _frames_graph(cast_first=False)
    with pytest.raises(TensorRTRulesError) as error:
        check_graph_for_tensorrt(bad, tmp_path / "m.onnx")
    message = str(error.value)
    assert "\n" not in message and "m.onnx: not written" in message and "--no-tensorrt-check" in message
    assert "UINT8" in message
    problems = check_graph_for_tensorrt(bad, tmp_path / "m.onnx", refuse=False)  # --no-tensorrt-check
    assert len(problems) >= 2 and sum("TensorRT compatibility" in r.message for r in caplog.records) == len(problems)
    assert check_graph_for_tensorrt(_frames_graph(cast_first=True), tmp_path / "m.onnx") == []

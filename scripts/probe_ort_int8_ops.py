"""Does int8 pay under ONNX Runtime when only Conv and MatMul are quantized (u8 activations)?

    python scripts/probe_ort_int8_ops.py models/ddavs-tiny-synth/model.onnx data/synthavs-calib \
        runs/bench-work/model.int8.onnx > probe.json

Quantizes the fp32 export twice with ONNX Runtime's `quantize_static` (per-channel s8 weights,
u8 asymmetric activations, `op_types_to_quantize=["Conv", "MatMul"]`, 8 SynthAVS calibration clips,
minmax): in the Q/DQ form and in the QOperator form (QLinearConv / QLinearMatMul). Then frames/s of
fp32, the project's Q/DQ file (third argument: `ddavs-rt calibrate --engine onnxruntime`, every
operator, symmetric s8) and the two at batch 1 and 8, 2 threads, spinning off, interleaved over
two rounds. A speed probe only: accuracy is not measured here.
"""
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, onnxruntime as ort
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from ddavs_rt.calibration.reader import ClipCalibrationReader
from ddavs_rt.engine.sidecar import read_onnx_sidecar

source, data, project = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = read_onnx_sidecar(source).model_cfg()
scratch = Path(tempfile.mkdtemp(prefix="ort-int8-ops."))
files = {"fp32": source, "qdq s8 every op (project)": project}
for name, form in (("qdq u8 Conv+MatMul", QuantFormat.QDQ), ("qoperator u8 Conv+MatMul", QuantFormat.QOperator)):
    reader = ClipCalibrationReader(data, cfg.input_size, cfg.sample_rate, cfg.window_samples, 8)
    target = scratch / (name.replace(" ", "_").replace("+", "_") + ".onnx")
    quantize_static(source, str(target), reader, quant_format=form, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "MatMul"])
    files[name] = str(target)
rng = np.random.default_rng(0)


def frames_per_s(path, batch, runs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inputs = {"frames": rng.integers(0, 256, (batch, cfg.input_size, cfg.input_size, 3), dtype=np.uint8),
              "audio": rng.uniform(-0.5, 0.5, (batch, cfg.window_samples)).astype(np.float32)}
    for _ in range(5):
        session.run(None, inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append(time.perf_counter() - start)
    return round(batch / float(np.median(times)), 1)


out = {"onnxruntime": ort.__version__, "threads": 2, "what": "frames/s, median of 60 (b1) / 15 (b8) runs, 2 interleaved rounds",
       "frames_per_s": {name: {"b1": [], "b8": []} for name in files}}
for _ in range(2):
    for name, path in files.items():
        out["frames_per_s"][name]["b1"].append(frames_per_s(path, 1, 60))
        out["frames_per_s"][name]["b8"].append(frames_per_s(path, 8, 15))
print(json.dumps(out, indent=1))

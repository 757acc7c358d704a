"""Where OpenVINO's CPU time goes for the fp32 graph in bf16 and for an NNCF int8 IR (f32 or bf16 rest).

    python scripts/profile_openvino_precisions.py model.onnx model.int8.xml > profile.json

OpenVINO's own per-node counters (PERF_COUNT), summed by (layer type, kernel) per inference at
batch 1 (fixed shapes, as the engine compiles them), 2 threads, LATENCY hint; plus plain frames/s of each setting at batch 1 and 8, settings
interleaved over two rounds. docs/results/cpu-engines.md reads one such profile: it is why int8
does not pay on an AMX CPU.
"""
import collections, json, sys, time
import numpy as np, openvino as ov

core = ov.Core()
rng = np.random.default_rng(0)


def compiled(path, precision, batch, profile=False):
    """Fixed shapes at `batch`, as OpenVinoEngine compiles them (ddavs_rt/engine/openvino_backend.py)."""
    model = core.read_model(path)
    model.reshape({port.any_name: [batch, *[d.get_length() for d in list(port.get_partial_shape())[1:]]] for port in model.inputs})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 2, "INFERENCE_PRECISION_HINT": precision}
    if profile:
        config["PERF_COUNT"] = True
    return core.compile_model(model, "CPU", config)


def feed(model, batch):
    inputs = {}
    for port in model.inputs:
        shape = [batch if d.is_dynamic else d.get_length() for d in port.get_partial_shape()]
        if port.get_element_type() == ov.Type.u8:
            inputs[port.any_name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            inputs[port.any_name] = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
    return inputs


def frames_per_s(path, precision, batch, runs):
    model = compiled(path, precision, batch)
    request, inputs = model.create_infer_request(), feed(model, batch)
    for _ in range(5):
        request.infer(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer(inputs)
        times.append(time.perf_counter() - start)
    return round(batch / float(np.median(times)), 1)


def profile(path, precision, runs=30, skip=5):
    model = compiled(path, precision, 1, profile=True)
    request, inputs = model.create_infer_request(), feed(model, 1)
    per, count = collections.Counter(), collections.Counter()
    for k in range(runs):
        request.infer(inputs)
        if k < skip:
            continue
        for node in request.profiling_info:
            if node.status == node.Status.EXECUTED:
                per[(node.node_type, node.exec_type)] += node.real_time.total_seconds() * 1e3
                count[(node.node_type, node.exec_type)] += 1
    n = runs - skip
    return {"total_ms_per_run": round(sum(per.values()) / n, 2),
            "top": [[t, kernel, round(ms / n, 2), count[(t, kernel)] // n] for (t, kernel), ms in per.most_common(16)]}


settings = [(sys.argv[1], "f32"), (sys.argv[1], "bf16"), (sys.argv[2], "f32"), (sys.argv[2], "bf16")]
out = {"openvino": ov.__version__, "capabilities": core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
       "threads": 2, "hint": "LATENCY", "shapes": "fixed per batch", "what": "per-node kernel time (ms per inference at batch 1) by layer type and kernel; "
       "frames/s median of 60 (b1) / 20 (b8) runs, settings interleaved, 2 rounds", "settings": {}}
for path, precision in settings:
    key = f"{path.rsplit('/', 1)[-1]} {precision}"
    out["settings"][key] = {"profile": profile(path, precision), "frames_per_s": {"b1": [], "b8": []}}
for _ in range(2):
    for path, precision in settings:
        key = f"{path.rsplit('/', 1)[-1]} {precision}"
        out["settings"][key]["frames_per_s"]["b1"].append(frames_per_s(path, precision, 1, 60))
        out["settings"][key]["frames_per_s"]["b8"].append(frames_per_s(path, precision, 8, 20))
print(json.dumps(out, indent=1))

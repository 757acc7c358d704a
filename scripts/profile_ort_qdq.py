"""Per-operator time of an fp32 graph and its Q/DQ int8 file under ONNX Runtime (CPU, 2 threads).

    python scripts/profile_ort_qdq.py model.onnx model.int8.onnx > profile.json

Kernel time per operator type (ONNX Runtime's own profiler), and the node types left after graph
optimisation, per run at batch 1. docs/results/cpu-engines.md reads one such profile.
"""
import collections, json, os, sys, tempfile
import numpy as np, onnx, onnxruntime as ort

scratch = tempfile.mkdtemp(prefix="ort-profile.")
rng = np.random.default_rng(0)
f = rng.integers(0, 256, (1, 160, 160, 3), dtype=np.uint8); a = rng.uniform(-.5, .5, (1, 16000)).astype(np.float32)
out = {}
for name, path in (("fp32", sys.argv[1]), ("qdq", sys.argv[2])):
    o = ort.SessionOptions(); o.enable_profiling = True; o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.optimized_model_filepath = os.path.join(scratch, f"{name}_optimized.onnx"); o.profile_file_prefix = os.path.join(scratch, name)
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    for _ in range(3): s.run(None, {"frames": f, "audio": a})
    for _ in range(10): s.run(None, {"frames": f, "audio": a})
    prof = s.end_profiling()
    events = json.load(open(prof))
    per = collections.Counter(); count = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["args"]["op_name"]] += e["dur"]; count[e["args"]["op_name"]] += 1
    total = sum(per.values())
    opt = onnx.load(o.optimized_model_filepath, load_external_data=False)
    types = collections.Counter(n.op_type for n in opt.graph.node)
    out[name] = {"total_ms_per_run": total / 13 / 1000, "top": [(k, round(v / 13 / 1000, 2), count[k] // 13) for k, v in per.most_common(14)], "optimized_node_types": dict(types.most_common(20))}
print(json.dumps(out, indent=1))

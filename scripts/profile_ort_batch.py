"""Why batch 8 barely beats batch 1 under ONNX Runtime: per-operator kernel time per frame.

    python scripts/profile_ort_batch.py models/ddavs-tiny-synth/model.onnx --threads 1 > profile.json

ONNX Runtime's own profiler (SessionOptions.enable_profiling), kernel time summed by operator
type, divided by the frames run, at each batch size; batch sizes interleaved round by round
(the machine is shared). The operator types whose time per frame falls least with the batch are
the ones batching cannot help. docs/results/batching.md reads one such profile.
"""
import argparse, collections, json, os, tempfile, time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("onnx")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--batch", default="1,8")
parser.add_argument("--frames", type=int, default=48, help="frames profiled per batch size and round")
parser.add_argument("--rounds", type=int, default=2)
args = parser.parse_args()
batches = [int(b) for b in args.batch.split(",")]
scratch = tempfile.mkdtemp(prefix="ort-batch-profile.")
rng = np.random.default_rng(0)
per = {b: collections.Counter() for b in batches}
nodes = {b: collections.Counter() for b in batches}
wall = {b: [] for b in batches}
cpu = {b: [] for b in batches}
for rnd in range(args.rounds):
    for b in batches:
        o = ort.SessionOptions(); o.enable_profiling = True
        o.intra_op_num_threads = args.threads; o.inter_op_num_threads = 1
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.profile_file_prefix = os.path.join(scratch, f"b{b}-r{rnd}")
        s = ort.InferenceSession(args.onnx, o, providers=["CPUExecutionProvider"])
        feed = {"frames": rng.integers(0, 256, (b, 160, 160, 3), dtype=np.uint8),
                "audio": rng.uniform(-.5, .5, (b, 16000)).astype(np.float32)}
        for _ in range(2):
            s.run(None, feed)
        s.end_profiling()  # warm-up runs are not counted: a new profile starts
        s = ort.InferenceSession(args.onnx, o, providers=["CPUExecutionProvider"])
        s.run(None, feed)
        runs = max(1, args.frames // b)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(runs):
            s.run(None, feed)
        wall[b].append((time.perf_counter() - t0) / (runs * b) * 1000)
        cpu[b].append((time.process_time() - c0) / (runs * b) * 1000)
        events = json.load(open(s.end_profiling()))
        kernel = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        # the first run after the session was made is a warm-up: drop its events (one per node)
        per_run = len(kernel) // (runs + 1)
        for e in kernel[per_run:]:
            per[b][e["args"]["op_name"]] += e["dur"] / (runs * b) / 1000.0
            nodes[b][e["args"]["op_name"]] += 1
        nodes[b] = collections.Counter({k: v // (runs * (rnd + 1)) for k, v in nodes[b].items()}) if rnd == args.rounds - 1 else nodes[b]
for b in batches:
    for k in per[b]:
        per[b][k] /= args.rounds
first, last = batches[0], batches[-1]
rows = []
for op, ms in per[first].most_common():
    rows.append({"op": op, "nodes": nodes[first][op], **{f"ms_per_frame_b{b}": round(per[b][op], 3) for b in batches},
                 f"b{last}_over_b{first}": round(per[last][op] / ms, 2) if ms else None})
print(json.dumps({
    "what": "ONNX Runtime kernel time per frame by operator type (profiler), CPU provider",
    "model": args.onnx, "threads": args.threads, "spinning": False, "rounds": args.rounds,
    "onnxruntime": ort.__version__, "load_average": os.getloadavg(),
    "kernel_ms_per_frame": {f"b{b}": round(sum(per[b].values()), 2) for b in batches},
    "wall_ms_per_frame": {f"b{b}": [round(v, 2) for v in wall[b]] for b in batches},
    "process_cpu_ms_per_frame": {f"b{b}": [round(v, 2) for v in cpu[b]] for b in batches},
    "by_op": rows,
}, indent=1))

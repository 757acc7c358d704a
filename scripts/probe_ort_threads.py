"""ONNX Runtime alone: wall and process CPU time per frame by intra-op threads x spinning x batch.

    python scripts/probe_ort_threads.py models/ddavs-tiny-synth/model.onnx --rounds 2 > threads.json

Every setting gets its own session; settings are interleaved round by round (the machine may be
shared), and every round is kept. docs/results/batching.md reads one such run.
"""
import argparse, json, os, time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("onnx")
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--frames", type=int, default=24, help="frames timed per setting and round")
args = parser.parse_args()
rng = np.random.default_rng(0)
rows: dict[str, dict] = {}
for rnd in range(args.rounds):
    for threads in (1, 2):
        for spinning in (True, False):
            for batch in (1, 8):
                o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
                o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
                s = ort.InferenceSession(args.onnx, sess_options=o, providers=["CPUExecutionProvider"])
                feed = {"frames": rng.integers(0, 256, (batch, 160, 160, 3), dtype=np.uint8),
                        "audio": rng.uniform(-.5, .5, (batch, 16000)).astype(np.float32)}
                for _ in range(2):
                    s.run(None, feed)
                runs = max(3, args.frames // batch)
                c0, t0 = time.process_time(), time.perf_counter()
                for _ in range(runs):
                    s.run(None, feed)
                frames = runs * batch
                row = rows.setdefault(f"threads{threads}-spin{int(spinning)}-b{batch}",
                                      {"threads": threads, "spinning": spinning, "batch": batch, "rounds": []})
                row["rounds"].append({"wall_ms_per_frame": round((time.perf_counter() - t0) / frames * 1000, 2),
                                      "cpu_ms_per_frame": round((time.process_time() - c0) / frames * 1000, 2),
                                      "load_average": os.getloadavg()[0]})
print(json.dumps({"what": "ONNX Runtime CPU provider alone, one session per setting, settings interleaved per round",
                  "model": args.onnx, "onnxruntime": ort.__version__, "settings": list(rows.values())}, indent=1))

#!/usr/bin/env bash
# Model benchmark of ddavs-tiny (random weights) on this machine, all CPU backends in one run;
# writes bench/results/<machine>-<date>.json. Usage: bench/model.sh [extra ddavs-rt bench options]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
exec "$PYTHON" -m ddavs_rt.cli bench --config configs/model/ddavs-tiny.yaml \
    --backend torch,onnxruntime,onnxruntime-int8 --batch 1,8 --warmup 3 --iters 20 --save "$@"

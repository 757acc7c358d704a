#!/usr/bin/env bash
# Batch-1 CPU speed of the four compared methods (baseline, DDESeg, SDAVS, DDAVS) at the study's
# budget graph, then the study tables rendered again with those speeds. Speed does not depend on
# the weights, so each method's model config (with its budget model_overrides) is benchmarked with
# random weights: the study's trained runs need not be on disk. Run it on a quiet machine.
#   scripts/bench_study_methods.sh                 -> bench/results/study/<config>.json, docs/results/study-*
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/study}
ITERS=${ITERS:-60}
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for name in tiny-baseline ddeseg-tiny sdavs-tiny tiny-full; do
  "$PY" - "configs/train/budget/$name.yaml" "$TMP/$name.json" <<'PY'
import json, sys
from pathlib import Path
from ddavs_rt.config import ModelConfig, TrainConfig, dump_config, load_config
train_path = Path(sys.argv[1])
train = load_config(train_path, TrainConfig)
model = load_config(train.model, ModelConfig, train.model_overrides)  # paths are relative to the repository root
Path(sys.argv[2]).write_text(json.dumps(dump_config(model)))
PY
  "$PY" -m ddavs_rt.cli bench --config "$TMP/$name.json" --backend torch,onnxruntime --batch 1 --iters "$ITERS" \
    --json "$OUT/$name.json" --note "random weights of configs/train/budget/$name.yaml's model (speed only)"
done
"$PY" -m ddavs_rt.train.study --from-json docs/results/study.json --bench "$OUT" --out docs/results

#!/usr/bin/env bash
# The paper's Table 3 / Table 4 ablation and the DDAVS / DDESeg / SDAVS / baseline comparison on
# SynthAVS, on one shared CPU budget (configs/train/budget/*.yaml): every config x every seed is
# trained, its best checkpoint evaluated on the test set with and without shuffled audio, the four
# compared methods benchmarked (torch and ONNX Runtime, batch 1, all cores, after training so the
# cores are quiet), and the tables are written by `python -m ddavs_rt.train.study`.
#   scripts/run_study.sh                   all 10 configs x seeds 0 1, 2 runs at a time, 1 thread each
#   CONFIGS="tiny-full" SEEDS=2 scripts/run_study.sh    a subset
# A rerun skips finished runs and resumes killed ones (from last/). Needs the stage-1 encoder
# (runs/tiny-audio/best), the bank (runs/bank/ddavs-tiny.safetensors) and the data of
# scripts/train_shipped_model.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-.venv/bin/python}
export RUNS=${RUNS:-runs/budget}
export TEST_DATA=${TEST_DATA:-data/synthavs-test}
SEEDS=${SEEDS:-"0 1"}
LANES=${LANES:-2}
CONFIGS=${CONFIGS:-"tiny-baseline tiny-full ddeseg-tiny sdavs-tiny tiny-aqm tiny-aqm-com tiny-avam tiny-pos-1 tiny-pos-4 tiny-pos-1234"}

one_run() {
  local name=$1 seed=$2
  local out="$RUNS/$name/seed$seed"
  if [[ -f "$out/eval_test_shuffled.json" ]]; then echo "done already: $out"; return 0; fi
  mkdir -p "$out"
  local resume=""
  [[ -f "$out/last/trainer_state.pt" ]] && resume=--resume
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  echo "$(date -u +%H:%M:%S) train $name seed $seed"
  "$PY" -m ddavs_rt.cli train --config "configs/train/budget/$name.yaml" --out "$out" --seed "$seed" $resume > "$out/train.log" 2>&1
  "$PY" -m ddavs_rt.cli eval --checkpoint "$out/best" --data "$TEST_DATA" --split test --json "$out/eval_test.json" > "$out/eval.log" 2>&1
  "$PY" -m ddavs_rt.cli eval --checkpoint "$out/best" --data "$TEST_DATA" --split test --shuffle-audio --json "$out/eval_test_shuffled.json" >> "$out/eval.log" 2>&1
  echo "$(date -u +%H:%M:%S) done $name seed $seed"
}
export -f one_run

for seed in $SEEDS; do for name in $CONFIGS; do echo "$name $seed"; done; done \
  | xargs -P "$LANES" -L 1 bash -c 'one_run "$0" "$1"'
for name in tiny-baseline ddeseg-tiny sdavs-tiny tiny-full; do
  first=$(ls -d "$RUNS/$name"/seed*/best 2>/dev/null | head -1)
  if [[ -n "$first" && ! -f "$RUNS/$name/bench.json" ]]; then
    "$PY" -m ddavs_rt.cli bench --checkpoint "$first" --backend torch,onnxruntime --batch 1 --iters 40 --json "$RUNS/$name/bench.json"
  fi
done
"$PY" -m ddavs_rt.train.study --runs "$RUNS" --out docs/results

#!/bin/bash
# As run: /tmp/base was `git worktree add /tmp/base ca1df87` with a link to the same .venv; the JSONs
# written to runs/b/ (ignored) were copied beside this script.
# interleaved 6/5-stream passes: base (HEAD) vs new code, LATENCY/1 and THROUGHPUT/2
cd /work/main
for n in 6 5; do
 for v in base lat1 thr2; do
  case $v in
   base) dir=/tmp/base; extra="";;
   lat1) dir=/work/main; extra="--hint LATENCY --inference-workers 1";;
   thr2) dir=/work/main; extra="--hint THROUGHPUT --inference-workers 2";;
  esac
  (cd $dir && timeout 200 /work/main/.venv/bin/python -c "import sys; sys.argv=['ddavs-rt','bench-pipeline','--backend','openvino:bf16','--streams','$n','--seconds','20','--overhead-seconds','2']+'$extra'.split()+['--json','/work/main/runs/b/v-$v-$n.json']; from ddavs_rt.cli import main; sys.exit(main())" 2>&1 | grep sustained | sed "s/^/$v $n: /")
 done
done

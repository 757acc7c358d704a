#!/bin/bash
# As run: /tmp/base was `git worktree add /tmp/base ca1df87` with a link to the same .venv; the JSONs
# written to runs/b/ (ignored) were copied beside this script.
cd /work/main
for n in 5 6; do
 for v in base dl5 dl20; do
  case $v in
   base) dir=/tmp/base; extra="";;
   dl5) dir=/work/main; extra="--batch-deadline-ms 5";;
   dl20) dir=/work/main; extra="--batch-deadline-ms 20";;
  esac
  (cd $dir && timeout 200 /work/main/.venv/bin/python -c "import sys; sys.argv=['ddavs-rt','bench-pipeline','--backend','openvino:bf16','--streams','$n','--seconds','20','--overhead-seconds','2']+'$extra'.split()+['--json','/work/main/runs/b/d-$v-$n.json']; from ddavs_rt.cli import main; sys.exit(main())" 2>&1 | grep sustained | sed "s/^/$v $n: /")
 done
done

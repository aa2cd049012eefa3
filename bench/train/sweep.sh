#!/usr/bin/env bash
# Frozen-encoder sweep over learning rate and temperature on the tables bench/train/run.sh
# imported (run that first). Each line: wall time, the step chosen by validation, the validation
# average and the test acc_predict per in-distribution table (from best.json). The first run
# embeds the queries (into routerdc's embedding cache); the others reuse them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}/venv/bin/python"
bin="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/routerdc"
work="${BENCH_DIR:-/tmp/routerdc-bench-train}"
for cfg in "0.005 1.0" "0.005 0.1" "0.05 0.1" "0.05 0.05" "0.02 0.2"; do
  set -- $cfg
  out="$work/sweep-$1-$2"
  start=$(date +%s.%N)
  "$bin" --quiet train --train "$work/train" --test "$work/test" --out "$out" --freeze-encoder --steps 1000 \
    --batch-size 64 --eval-steps 100 --learning-rate "$1" --temperature "$2"
  echo "lr $1 tau $2: $(echo "$(date +%s.%N) - $start" | bc) s; $("$python" -c "
import json; d=json.load(open('$out/best.json')); t=dict(d['test']); print('step', d['step'], 'val', round(d['validation_average']*100,2), 'test ID avg', round(sum(t.values())/len(t)*100,2), {k: round(v*100,2) for k,v in t.items()})")"
done

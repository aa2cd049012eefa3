#!/usr/bin/env bash
# Fine-tuning's encoder workers (`routerdc train --workers`, issue 18): one pass at a time on every
# core (`--workers 1`) against passes side by side on workers of one core each (the default on a
# CPU), in the same go, the paper's configuration (bench/train/paper.sh's settings):
#   1. steps: PAIRS pairs of STEPS-step runs, alternating which runs first; s/step after the first
#      (the final evaluation routes humaneval's test table alone, so it stays short);
#   2. evaluations: one step, then an evaluation on `--eval-sample 500` and the full sets (594
#      held-out rows + every test row of split2_model7), each way.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/workers.sh [STEPS] [PAIRS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-workers}"
steps="${1:-21}"
pairs="${2:-3}"
paper_step_timing "$work"

run_steps() { # WORKERS
  "$bin" train "${settings[@]}" --test "$work/humaneval" --steps "$steps" --eval-steps 100000 --eval-sample 10 \
    --workers "$1" --out "$work/steps-$1" 2>&1 | grep -E '^trained' | sed -E "s/^/--workers $1: /; s/; best.*//"
}
echo "== 1. $pairs pairs of $steps steps"
for pair in $(seq "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then run_steps 1; run_steps 0; else run_steps 0; run_steps 1; fi
done

echo "== 2. evaluations after one step"
for workers in 1 0; do
  "$bin" train "${settings[@]}" --test "$work/test" --steps 1 --eval-steps 1 --eval-sample 500 --workers "$workers" \
    --out "$work/eval-$workers" 2>&1 | grep -E '^step' | sed -E "s/^/--workers $workers: /"
done

#!/usr/bin/env bash
# Training benchmarks on the RouterDC paper's data (split2_model7_cluster training tables, the
# five in-distribution test tables of split2_model7), default encoder, this machine's cores.
#   1. quality: `routerdc train` (frozen encoder, 1000 steps, batch 64, the reference's losses)
#      then `report --checkpoint`: per-dataset acc_predict on the test tables, ID average.
#   2. step time: `routerdc train` with the encoder trained (tokenised once; each batch in one pass
#      padded to its longest query, then in passes of at most 1024 padded tokens) against
#      bench/train/reference_loop.py (padded to 512, tokenised per step), same batch.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/run.sh [STEPS_FOR_TIMING] [BATCH]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-train}"
timing_steps="${1:-5}"
batch="${2:-64}"
rm -rf "$work" && mkdir -p "$work"
"$bin" --quiet import --out "$work/train" "$ROUTERDC_DATA"/split2_model7_cluster/*.json
d="$ROUTERDC_DATA/split2_model7"
"$bin" --quiet import --out "$work/test" "$d/mmlu_test.json" "$d/gsm8k-test.json" "$d/cmmlu_test.json" \
  "$d/arc_challenge_test.json" "$d/humaneval_test.json"
echo "machine: $(nproc) cores; encoder: $encoder"

echo "== 1. quality: frozen encoder, 1000 steps, batch 64"
start=$(date +%s.%N)
"$bin" train --train "$work/train" --test "$work/test" --out "$work/frozen" --freeze-encoder \
  --steps 1000 --batch-size 64 --eval-steps 100 --learning-rate 0.005 2>&1 | grep -E "encoded|trained"
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"
"$bin" --quiet report --tables "$work/test" --checkpoint "$work/frozen/best.safetensors" --out "$work/report" \
  --group id=mmlu_test,gsm8k-test,cmmlu_test,arc_challenge_test,humaneval_test \
  | grep -E "^\| (dataset|---|group|.*routerdc|.*best_single|.*oracle)" || true

echo "== 2. step time, encoder trained, batch $batch, $timing_steps steps each"
# The same random batches, each in one pass padded to its longest query, then in passes of at
# most 1024 padded tokens (the default); then length-bucketed batches in such passes. A held-out
# tenth validates, so the one evaluation (at the last step) is short.
for options in "--batch-tokens 0" "--batch-tokens 1024" "--batch-tokens 1024 --length-buckets 8"; do
  echo "$options"
  # shellcheck disable=SC2086 # the options are words
  "$bin" train --train "$work/train" --out "$work/steps" --steps "$((timing_steps + 1))" --batch-size "$batch" \
    --eval-steps 100000 --validation-ratio 0.1 $options 2>&1 | grep trained
  rm -rf "$work/steps"
done
"$python" bench/train/reference_loop.py "$encoder" "$ROUTERDC_DATA" "$timing_steps" "$batch" "$(nproc)" 2>&1 | grep reference

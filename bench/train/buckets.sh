#!/usr/bin/env bash
# Random batches against length-bucketed ones at equal steps (issue 18): the paper's configuration
# of bench/train/paper.sh, section 1 (encoder trained, 1000 steps, batch 64, lr 5e-5, τ 1, cluster
# loss, the step chosen on a held-out tenth), trained again with `--length-buckets N`; then that
# router on the test table of the paper (split2_model7's test rows) beside the baselines, with the
# bootstrap verdict, to set beside paper.sh's random-batch router (its report is in report/).
# Needs paper.sh's work folder: its tables and its random-batch router (trained/).
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/buckets.sh [N] [STEPS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-paper}"
buckets="${1:-8}"
steps="${2:-1000}"
if [ ! -f "$work/trained/best.safetensors" ] || [ ! -d "$work/report-tables/tables" ]; then
  echo "buckets.sh: run bench/train/paper.sh first ($work has no trained/ or report-tables/)" >&2
  exit 2
fi
out="$work/trained-b$buckets"
rm -rf "$out" "$work/report-buckets"
echo "machine: $(nproc) cores; encoder: $encoder; $(date -u +%FT%TZ)"

echo "== encoder trained, --length-buckets $buckets, $steps steps"
start=$(date +%s.%N)
"$bin" train "${paper_settings[@]}" "${paper_trained[@]}" --train "$work/train" --test "$work/test" --steps "$steps" --out "$out" \
  --length-buckets "$buckets" 2> >(tee "$work/trained-b$buckets.log" | grep --line-buffered -E "^step|trained" >&2)
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"
echo "random batches (paper.sh): $(grep -E '^trained' "$work/trained.log")"

echo "== test tables"
paper_test_report "$work/report-tables/tables" "$work/report-buckets" "bucketed=$out/best.safetensors"

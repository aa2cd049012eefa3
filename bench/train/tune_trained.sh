#!/usr/bin/env bash
# RouterDC with the encoder trained, searched on validation only (issue 18): `routerdc tune` on
# the paper's configuration (bench/train/paper.sh, run 1) with the settings given tried, each
# trial a whole fine-tuning run whose step is chosen on a held-out tenth of the training rows;
# then `report --checkpoint` for every trial on the test rows of split2_model7 beside task_best,
# the best single LLM and the oracle, with the bootstrap verdicts. The winner is the trial with
# the highest validation average (`trials.parquet`); compare it with paper.sh's run 1 the same way.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/tune_trained.sh STEPS --try-temperature 0.1,0.05
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-tune-trained}"
steps="${1:?give the number of steps, then the settings to try}"
shift
rm -rf "$work" && mkdir -p "$work"
paper_train_test "$work"
echo "machine: $(nproc) cores; encoder: $encoder; $(date -u +%FT%TZ)"
echo "== routerdc tune, encoder trained, $steps steps: $*"
start=$(date +%s.%N)
"$bin" tune --train "$work/train" --test "$work/test" --steps "$steps" "${paper_settings[@]}" "${paper_trained[@]}" \
  "$@" --out "$work/tune" 2> >(tee "$work/tune.log" | grep --line-buffered -E "^trial|^tried|trained" >&2)
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"
"$pyarrow_python" -c 'import sys, pandas as pd; print(pd.read_parquet(sys.argv[1]).to_string(index=False))' "$work/tune/trials.parquet"

echo "== test tables"
paper_tables "$work/report-tables"
trials=()
for trial in "$work"/tune/trial-*/; do
  trials+=("$(basename "$trial")=$trial/best.safetensors")
done
paper_test_report "$work/report-tables/tables" "$work/report" "${trials[@]}"

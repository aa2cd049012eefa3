#!/usr/bin/env bash
# Router kinds on the RouterDC paper's data ($ROUTERDC_DATA/split2_model7): train the kNN,
# cluster and MLP routers on the 5,935 training queries (frozen default encoder, mean pooling),
# with the vectors already in the embedding cache (a first, untimed run fills it), 3 timed runs
# each; then route 1,000 test queries one at a time through the kNN router and report its time
# per query beside the encoder's; then the report with the verdict against best_single and
# task_best, in distribution (the five `_test` tables) and out of it (MATH_prealgebra, mbpp).
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/routers/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-routers}"
rm -rf "$work"
paper_tables "$work"
echo "machine: $(nproc) cores; training tables: $(ls "$work/train" | tr '\n' ' ')"
"$bin" --quiet train --router knn --train "$work/train" --out "$work/warm"
for kind in knn cluster mlp; do
  for run in 1 2 3; do
    start=$(date +%s.%N)
    line="$("$bin" train --router "$kind" --train "$work/train" --test "$work/test" --out "$work/$kind" 2>&1 | tail -1)"
    echo "$kind run $run: $(echo "$(date +%s.%N) - $start" | bc) s wall (process start, encoder hashing and cache read included): $line"
  done
done
"$pyarrow_python" -c "
import pandas as pd
texts = pd.read_parquet('$work/test/mmlu_test.parquet')['text'].head(1000)
open('$work/queries.txt', 'w').write(''.join(t.replace('\n', ' ').replace('\r', ' ') + '\n' for t in texts))"
for kind in knn mlp; do
  "$bin" route --checkpoint "$work/$kind" < "$work/queries.txt" 2>&1 >/dev/null | tail -1
done
ID=mmlu_test,gsm8k-test,cmmlu_test,arc_challenge_test,humaneval_test
"$bin" report --tables "$work/tables" --split test --checkpoint "$work/knn" --checkpoint "$work/cluster" --checkpoint "$work/mlp" \
  --out "$work/report" --group "id=$ID" --group ood=MATH_prealgebra,mbpp > /dev/null
sed -n '/## Verdict/,/## acc_predict/p' "$work/report/report.md" | grep '^|'
grep -E '^group,(id|ood),(knn|cluster|mlp|best_single|task_best),' "$work/report/baselines.csv" | cut -d, -f2,3,4,7,8,9

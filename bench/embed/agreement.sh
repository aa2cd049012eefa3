#!/usr/bin/env bash
# What int8 does to routing: a frozen-encoder RouterDC router (default encoder; lr 0.05, τ 0.05,
# the setting BENCHMARKS.md's sweep chose on validation; no cluster loss, as these tables carry
# no cluster ids) and an MLP router, both trained on the float32 vectors of the paper's 5,935
# training queries ($ROUTERDC_DATA/split2_model7), route every test query (5 in-distribution
# tables, 2 out of distribution) with the encoder in float32 and in int8. Prints the share of queries routed to the same LLM, per table and overall, and
# the report's group averages (acc_predict) for both precisions beside the baselines.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/embed/agreement.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-int8}"
rm -rf "$work"
paper_tables "$work"
"$bin" --quiet train --train "$work/train" --out "$work/routerdc" --freeze-encoder --steps 1000 --batch-size 64 \
  --eval-steps 100 --learning-rate 0.05 --temperature 0.05 --cluster-weight 0
"$bin" --quiet train --router mlp --train "$work/train" --out "$work/mlp"
for router in routerdc/best.safetensors mlp; do
  name="${router%%/*}"
  for quantize in none int8; do
    "$bin" --quiet route --checkpoint "$work/$router" --tables "$work/test" --out "$work/routes-$name-$quantize" \
      --quantize "$quantize" --device cpu
  done
done
"$pyarrow_python" - "$work" <<'PY'
import os, sys, pandas as pd
work = sys.argv[1]
for name in ("routerdc", "mlp"):
    same = total = 0
    parts = []
    for table in sorted(os.listdir(f"{work}/routes-{name}-none")):
        a = pd.read_parquet(f"{work}/routes-{name}-none/{table}")
        b = pd.read_parquet(f"{work}/routes-{name}-int8/{table}")
        assert (a["query_id"] == b["query_id"]).all()
        agree = int((a["llm"] == b["llm"]).sum())
        same, total = same + agree, total + len(a)
        parts.append(f"{table.removesuffix('.parquet')} {100 * agree / len(a):.2f}%")
    print(f"{name}: int8 and float32 route {same}/{total} test queries ({100 * same / total:.2f}%) to the same LLM; {', '.join(parts)}")
PY
ID=mmlu_test,gsm8k-test,cmmlu_test,arc_challenge_test,humaneval_test
for quantize in none int8; do
  "$bin" --quiet report --tables "$work/tables" --split test --checkpoint "routerdc=$work/routerdc/best.safetensors" \
    --checkpoint "mlp=$work/mlp" --quantize "$quantize" --out "$work/report-$quantize" --group "id=$ID" \
    --group ood=MATH_prealgebra,mbpp > /dev/null
  echo "report, encoder in $quantize (group, row, acc_predict):"
  grep -E '^group,(id|ood),(routerdc|mlp|best_single|task_best|oracle),' "$work/report-$quantize/baselines.csv" | cut -d, -f2,3,7
done

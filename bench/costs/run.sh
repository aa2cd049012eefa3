#!/usr/bin/env bash
# Calibration out of sample on RouterBench 0-shot: run pipelines/routerbench.toml (routers
# trained on the `train` rows), then split each table's `test` rows in two by position (even
# rows: calibration, odd rows: check), calibrate every router to a budget of $0.0002 per query on
# the even rows and report on the odd rows: the "Calibrated operating points" table gives the
# cost on rows neither trained on nor calibrated on, against the calibrated cost.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/costs/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-costs}"
rm -rf "$work" && mkdir -p "$work/calibration" "$work/check"
"$bin" --quiet run pipelines/routerbench.toml --outputs "$work/outputs" > /dev/null
out="$work/outputs/routerbench"
"$pyarrow_python" - "$out/cluster" "$work" <<'PY'
import glob, os, sys, pandas as pd
tables, work = sys.argv[1:3]
for path in sorted(glob.glob(f"{tables}/*.parquet")):
    frame = pd.read_parquet(path)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    name = os.path.basename(path)
    test.iloc[0::2].to_parquet(f"{work}/calibration/{name}", index=False)
    test.iloc[1::2].to_parquet(f"{work}/check/{name}", index=False)
    print(f"{name}: {len(test.iloc[0::2])} calibration rows, {len(test.iloc[1::2])} check rows")
PY
checkpoints=()
calibrations=()
for router in routerdc knn cluster mlp; do
  path="$out/train-$router"
  [ "$router" = routerdc ] && path="$path/best.safetensors"
  "$bin" calibrate --router "$path" --tables "$work/calibration" --budget 0.0002 --out "$work/cal-$router"
  checkpoints+=(--checkpoint "$router=$path")
  calibrations+=(--calibration "$router=$work/cal-$router/calibration.json")
done
"$bin" --quiet report --tables "$work/check" --cost-rate 20 "${checkpoints[@]}" "${calibrations[@]}" --out "$work/report" > /dev/null
sed -n '/### Calibrated/,/^## /p' "$work/report/report.md" | grep '^|'

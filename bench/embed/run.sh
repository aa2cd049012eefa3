#!/usr/bin/env bash
# Embedding benchmark: `routerdc embed` vs HF transformers (bench/embed/baseline.py) on every
# training query of $ROUTERDC_DATA/split2_model7 (the RouterDC paper's data), default encoder,
# batch 64, max length 512, left truncation, the machine's cores; same run, both cold-cache
# (routerdc runs with --no-cache). Also checks that both computed the same vectors.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/embed/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-embed}"
threads="$(nproc)"
rm -rf "$work" && mkdir -p "$work"
"$bin" --quiet import --out "$work/tables" "$ROUTERDC_DATA"/split2_model7/*train*.json
"$pyarrow_python" - "$work" <<'PY'
import json, os, sys, pandas as pd
work = sys.argv[1]
texts = []
for name in sorted(os.listdir(f"{work}/tables")):
    texts += pd.read_parquet(f"{work}/tables/{name}")["text"].tolist()
json.dump(texts, open(f"{work}/texts.json", "w"))
print(f"{len(texts)} queries, {len(set(texts))} distinct")
PY
echo "machine: $(nproc) cores; encoder: $encoder"
for run in 1 2 3; do
  start=$(date +%s.%N)
  "$bin" embed --no-cache --tables "$work/tables" --out "$work/routerdc" --batch-size 64 --max-length 512 2>&1 | grep embedded
  echo "routerdc run $run: $(echo "$(date +%s.%N) - $start" | bc) s wall (process start and model load included)"
  "$python" bench/embed/baseline.py "$encoder" "$work/texts.json" "$work/hf.npy" 64 512 "$threads" | tr '\n' ' '
  echo "(HF run $run, embedding alone)"
done
"$pyarrow_python" - "$work" <<'PY'
import sys, numpy as np, pandas as pd, os
work = sys.argv[1]
ours = np.concatenate([np.stack(pd.read_parquet(f"{work}/routerdc/{n}")["embedding"].to_numpy()) for n in sorted(os.listdir(f"{work}/routerdc"))])
theirs = np.load(f"{work}/hf.npy")
print(f"max |routerdc - HF| over {ours.shape[0]} x {ours.shape[1]} values: {np.abs(ours - theirs).max():.2e}")
PY

#!/usr/bin/env bash
# k-means benchmark: `routerdc cluster` (linfa-clustering) vs scikit-learn's KMeans on the same
# 10,000 × 384 vectors (all-MiniLM-L6-v2 embeddings of the first 10,000 queries of
# $ROUTERDC_DATA/split2_model7), k = 5, 3 restarts, at most 1000 iterations, seed 42; same run.
# Reports the k-means time alone (embedding excluded: routerdc reads `routerdc embed`'s files)
# and the inertia (sum of squared distances) of both.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/cluster/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-cluster}"
rm -rf "$work" && mkdir -p "$work/json"
"$python" - "$ROUTERDC_DATA" "$work" <<'PY'
import glob, json, sys
data, work = sys.argv[1:3]
texts = []
for path in sorted(glob.glob(f"{data}/split2_model7/*.json")):
    texts += [record["question"] for record in json.load(open(path))]
texts = texts[:10000]
assert len(texts) == 10000, len(texts)
json.dump([{"question": t, "scores": {"a": 1.0, "b": 0.0}} for t in texts], open(f"{work}/json/bench10k_train.json", "w"))
PY
"$bin" --quiet import --out "$work/tables" --kind bench10k_train=probability "$work/json/bench10k_train.json"
"$bin" embed --tables "$work/tables" --out "$work/emb" 2>&1 | grep embedded
"$pyarrow_python" -c "
import sys, numpy as np, pandas as pd
x = np.stack(pd.read_parquet('$work/emb/bench10k_train.parquet')['embedding'].to_numpy()).astype(np.float32)
np.save('$work/x.npy', x); print('vectors:', x.shape, x.dtype)"
echo "machine: $(nproc) cores"
for run in 1 2 3; do
  "$bin" cluster --tables "$work/tables" --embeddings "$work/emb" --out "$work/out" -k 5 --restarts 3 \
    --max-iterations 1000 --seed 42 --max-per-table 0 2>&1 | grep -E "k-means|inertia" | tr '\n' ' '
  echo "(routerdc run $run)"
  "$python" - "$work/x.npy" <<'PY'
import sys, time, numpy as np
from sklearn.cluster import KMeans
x = np.load(sys.argv[1])
start = time.perf_counter()
model = KMeans(n_clusters=5, n_init=3, max_iter=1000, tol=1e-4, random_state=42, algorithm="lloyd").fit(x)
print(f"scikit-learn KMeans: {time.perf_counter() - start:.2f} s, inertia {model.inertia_:.4f}, {model.n_iter_} iterations")
PY
done

#!/usr/bin/env bash
# Embedding benchmark: `routerdc embed` vs HF transformers (bench/embed/baseline.py) on every
# training query of $ROUTERDC_DATA/split2_model7 (the RouterDC paper's data), default encoder,
# batch 64, max length 512, left truncation, the machine's cores; same run, both cold-cache
# (routerdc runs with --no-cache). float32 and int8 (`--quantize int8` against PyTorch's
# quantize_dynamic on the same HF model), three alternating rounds. Also compares the vectors.
# Then single-query latency at 20/80/300 tokens, float32 and int8, routerdc vs HF.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/embed/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-embed}"
threads="$(nproc)"
rm -rf "$work" && mkdir -p "$work"
training_texts "$work"
echo "machine: $(nproc) cores; encoder: $encoder"
for run in 1 2 3; do
  for quantize in none int8; do
    start=$(date +%s.%N)
    "$bin" embed --no-cache --tables "$work/tables" --out "$work/routerdc-$quantize" --batch-size 64 --max-length 512 \
      --quantize "$quantize" 2>&1 | grep embedded
    echo "routerdc $quantize run $run: $(echo "$(date +%s.%N) - $start" | bc) s wall (process start and model load included)"
    "$python" bench/embed/baseline.py "$encoder" "$work/texts.json" "$work/hf-$quantize.npy" 64 512 "$threads" "$quantize" \
      2>/dev/null | tr '\n' ' '
    echo "(HF $quantize run $run, embedding alone)"
  done
done
"$pyarrow_python" - "$work" <<'PY'
import sys, numpy as np, pandas as pd, os
work = sys.argv[1]
def ours(quantize):
    folder = f"{work}/routerdc-{quantize}"
    return np.concatenate([np.stack(pd.read_parquet(f"{folder}/{n}")["embedding"].to_numpy()) for n in sorted(os.listdir(folder))])
def cosine(a, b):
    c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return f"cosine min {c.min():.4f}, median {np.median(c):.4f}"
f32, i8, hf32, hf8 = ours("none"), ours("int8"), np.load(f"{work}/hf-none.npy"), np.load(f"{work}/hf-int8.npy")
print(f"float32: max |routerdc - HF| over {f32.shape[0]} x {f32.shape[1]} values: {np.abs(f32 - hf32).max():.2e}")
print(f"routerdc int8 vs routerdc float32: {cosine(i8, f32)}")
print(f"PyTorch int8 vs HF float32: {cosine(hf8, hf32)}")
print(f"routerdc int8 vs PyTorch int8: {cosine(i8, hf8)}")
PY
echo "single-query latency, all $threads cores (tokenising, forward pass, vector read back), 200 queries per length:"
for quantize in none int8; do
  "$bin_torch" --quiet latency --tokens 20,80,300 --repeats 200 --quantize "$quantize" < "$work/texts.json" | sed 's/^/routerdc /'
  "$python" bench/embed/latency_baseline.py "$encoder" "$work/texts.json" 20,80,300 200 "$threads" "$quantize" 2>/dev/null | sed 's/^/HF /'
done

#!/usr/bin/env bash
# The paper's training with the encoder trained, end to end on this machine (issue 18):
#   1. `routerdc train`, the reference's settings (1000 steps, batch 64, AdamW 5e-5, τ = 1,
#      top_k = last_k = 3, cluster loss), default encoder, random batches as the reference draws
#      them; the step chosen on a held-out tenth of the training rows (`--validation-ratio 0.1`,
#      never on test), evaluated every 100 steps on `--eval-sample 500`, the chosen step on the
#      full sets at the end. Wall time, s/step, evaluation seconds.
#   2. the frozen-encoder router on the same tables (lr 0.05, τ 0.1: `routerdc tune`'s choice,
#      BENCHMARKS.md), chosen the same way.
#   3. `report --checkpoint` for both on the test rows of split2_model7 (5 in-distribution tables, 2
#      out of it), beside task_best, the best single LLM and the oracle, with the bootstrap verdict.
#   4. the step time of bench/train/reference_loop.py (HF + PyTorch, padded to 512), same batch:
#      as PyTorch runs it, and with MKL's vendor test answered as routerdc-torch answers it
#      (src/torch/mkl.rs: MKL's AVX-512 kernels on an AMD processor that has AVX-512).
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/train/paper.sh [STEPS] [REFERENCE_STEPS]
# EXTRA="--task-weight 1" adds settings to run 1 (the fine-tuned router) alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-paper}"
steps="${1:-1000}"
reference_steps="${2:-3}"
rm -rf "$work" && mkdir -p "$work"
paper_train_test "$work"
echo "machine: $(nproc) cores; encoder: $encoder; $(date -u +%FT%TZ)"
common=(--train "$work/train" --test "$work/test" --steps "$steps" "${paper_settings[@]}")

read -r -a extra <<<"${EXTRA:-}"
echo "== 1. encoder trained, lr 5e-5, τ 1, $steps steps ${extra[*]}"
start=$(date +%s.%N)
"$bin" train "${common[@]}" "${paper_trained[@]}" "${extra[@]}" --out "$work/trained" \
  2> >(tee "$work/trained.log" | grep --line-buffered -E "^step|trained" >&2)
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"

echo "== 2. frozen encoder, lr 0.05, τ 0.1, $steps steps"
start=$(date +%s.%N)
"$bin" train "${common[@]}" --out "$work/frozen" --freeze-encoder --learning-rate 0.05 --temperature 0.1 2>&1 \
  | grep -E "encoded|trained"
echo "wall: $(echo "$(date +%s.%N) - $start" | bc) s"

echo "== 3. test tables"
# All of split2_model7 (training tables too: task_best picks each task's LLM on them), test rows.
paper_tables "$work/report-tables"
paper_test_report "$work/report-tables/tables" "$work/report" \
  "trained=$work/trained/best.safetensors" "frozen=$work/frozen/best.safetensors"

echo "== 4. reference-style loop, $reference_steps steps after a warm-up"
"$python" bench/train/reference_loop.py "$encoder" "$ROUTERDC_DATA" "$reference_steps" 64 "$(nproc)" 2>&1 | grep reference
cc -shared -fPIC -O2 -o "$work/mkl_any_vendor.so" bench/train/mkl_any_vendor.c
echo "   with MKL's vendor test answered as routerdc-torch answers it:"
LD_PRELOAD="$work/mkl_any_vendor.so" "$python" bench/train/reference_loop.py "$encoder" "$ROUTERDC_DATA" \
  "$reference_steps" 64 "$(nproc)" 2>&1 | grep reference

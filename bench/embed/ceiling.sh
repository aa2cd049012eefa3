#!/usr/bin/env bash
# How far int8 inference can go against HF float32 on this machine (issue 15): bench/embed/ceiling.py
# on run.sh's 5,935 training queries, batch 64, max length 512, the machine's cores.
# Usage: ROUTERDC_DATA=../shared/routerdc-data bench/embed/ceiling.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source bench/common.sh
work="${BENCH_DIR:-/tmp/routerdc-bench-ceiling}"
rm -rf "$work" && mkdir -p "$work"
training_texts "$work"
echo "machine: $(nproc) cores; encoder: $encoder; $(date -u +%FT%TZ)"
"$python" bench/embed/ceiling.py "$encoder" "$work/texts.json" 64 512 "$(nproc)"

#!/usr/bin/env bash
# The whole test suite, set-up included (idempotent; seconds when already done):
#
#   scripts/test.sh [extra cargo test arguments]
#
# 1. scripts/setup.sh: the venv with torch 2.13.0 and the default encoder, .cargo/config.toml.
# 2. ROUTERDC_DATA: the RouterDC paper's datasets, for the tests that check the published numbers;
#    taken from the environment, else ../shared/routerdc-data when it exists, made absolute.
#    Without them those tests say they were skipped.
# 3. cargo test --release --locked, with the build's progress shown (the first build compiles
#    ~500 crates: about 20-30 minutes on 2 cores; later builds recompile only routerdc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
if [ -z "${ROUTERDC_DATA:-}" ] && [ -d ../shared/routerdc-data ]; then
  ROUTERDC_DATA=../shared/routerdc-data
fi
if [ -n "${ROUTERDC_DATA:-}" ]; then
  export ROUTERDC_DATA="$(cd "$ROUTERDC_DATA" && pwd)"
  echo "test: the paper's datasets from $ROUTERDC_DATA" >&2
else
  echo "test: ROUTERDC_DATA is not set: the tests on the paper's datasets will be skipped" >&2
fi
scripts/build.sh
exec cargo test --release --locked "$@"

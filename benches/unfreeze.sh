#!/usr/bin/env bash
# Frozen head vs `fit --unfreeze 1` and `--unfreeze 2` on the same splits: accuracy on the
# held-out part, seconds of fine-tuning, training maps per second, epochs run / kept.
#
#   benches/unfreeze.sh MODEL DATA [SEED ...] [-- FIT OPTIONS]
#   benches/unfreeze.sh mobilenetv2 ../shared/data/hymenoptera 0 1 2 3 4
#   benches/unfreeze.sh mobilenetv2 ../shared/data/orl_faces 0 1 2 3 4 -- --no-group
#   LISTS=DIR benches/unfreeze.sh mobilenetv2 ../shared/data/hymenoptera   # a split from list files
#
# Features and maps are cached ($QCYN_CACHE_DIR), so only the first run of each model pays for
# the backbone. Needs a release build (cargo build --release) and scripts/setup.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QCYN="$REPO/target/release/qcyn"
MODEL="$1"; DATA="$2"; shift 2
SEEDS=(); while [ $# -gt 0 ] && [ "$1" != "--" ]; do SEEDS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
EXTRA=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(0)
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
printf 'seed\tunfreeze\taccuracy\tn_val\ttrain_s\tmaps_per_s\tepochs_run\tbest_epoch\tstop\n'
for seed in "${SEEDS[@]}"; do
  if [ -n "${LISTS:-}" ]; then src=(--lists "$LISTS" --base "$DATA"); else src=("$DATA" --seed "$seed"); fi
  for u in 0 1 2; do
    "$QCYN" fit "${src[@]}" --model "$MODEL" --unfreeze "$u" --out "$OUT/b$u" --json -q "${EXTRA[@]}" > "$OUT/r.json" || true
    python3 - "$OUT/r.json" "$seed" "$u" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); f = d.get("fine_tuning") or {}
g = lambda k, fmt="{}": fmt.format(f[k]) if k in f else "-"
print("\t".join([sys.argv[2], sys.argv[3], f"{d['accuracy']:.4f}", str(d["n_val"]), g("train_seconds", "{:.1f}"),
                 g("samples_per_s", "{:.0f}"), g("epochs_run"), g("best_epoch"), f.get("stop_reason", "-")]))
PY
  done
done

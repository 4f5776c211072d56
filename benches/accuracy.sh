#!/usr/bin/env bash
# Accuracy over seeds: `qcyn fit` with N validation images per class, once per seed, then the mean
# and standard deviation of validation accuracy. Features are cached, so only the first seed runs
# the backbone.
#
#   benches/accuracy.sh DATA MODEL VAL_PER_CLASS SEED...
#   e.g. benches/accuracy.sh ../shared/data/orl_faces face 5 0 1 2 3 4
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
Q="${QCYN:-$REPO/target/release/qcyn}"
data="$1" model="$2" val="$3"
shift 3
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for seed in "$@"; do
  "$Q" fit "$data" --model "$model" --val-per-class "$val" --seed "$seed" --out "$tmp/b$seed" --json --quiet \
    >"$tmp/fit$seed.json" || [ $? -eq 3 ]
done
python3 - "$tmp" "$model" "$@" <<'PY'
import json, statistics, sys
tmp, model, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
fits = [json.load(open(f"{tmp}/fit{s}.json")) for s in seeds]
acc = [f["accuracy"] for f in fits]
no_face = sorted({p["path"] if isinstance(p, dict) else p for f in fits for p in f.get("no_face", [])})
out = {
    "model": model,
    "seeds": [int(s) for s in seeds],
    "accuracy": acc,
    "mean": statistics.mean(acc),
    "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
    "n_train": fits[0]["n_train"],
    "n_val": fits[0]["n_val"],
    "images_without_face": len(no_face),
}
print(json.dumps(out))
PY

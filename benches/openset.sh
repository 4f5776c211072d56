#!/usr/bin/env bash
# Open-set check for face mode: train on KNOWN people (VAL images each held out), then evaluate on
# every image of all people. Images of the others are strangers: the report gives the share of
# strangers rejected as `unknown` and of known faces wrongly rejected, at the threshold calibrated
# for --false-reject-rate (cross-validated on the training faces only).
#
#   benches/openset.sh DATA KNOWN VAL SEED [FALSE_REJECT_RATE]
#   e.g. benches/openset.sh ../shared/data/orl_faces 30 5 0 0.01
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
Q="${QCYN:-$REPO/target/release/qcyn}"
data="$(cd "$1" && pwd)" known="$2" val="$3" seed="$4" frr="${5:-0.01}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/known" "$tmp/all"
# Known people: a seeded choice of class folders.
mapfile -t classes < <(find "$data" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
mapfile -t chosen < <(printf '%s\n' "${classes[@]}" | python3 -c "
import random, sys
c = [l.strip() for l in sys.stdin if l.strip()]
random.Random($seed).shuffle(c)
print('\n'.join(sorted(c[:$known])))")
for c in "${chosen[@]}"; do ln -s "$data/$c" "$tmp/known/$c"; done
for c in "${classes[@]}"; do ln -s "$data/$c" "$tmp/all/$c"; done
"$Q" fit "$tmp/known" --model face --val-per-class "$val" --seed "$seed" --false-reject-rate "$frr" \
  --out "$tmp/bundle" --json --quiet >"$tmp/fit.json" || [ $? -eq 3 ]
"$Q" eval --bundle "$tmp/bundle" "$tmp/all" --json --quiet >"$tmp/eval.json" || [ $? -eq 3 ]
python3 - "$tmp" <<'PY'
import json, sys
fit, ev = (json.load(open(f"{sys.argv[1]}/{n}.json")) for n in ("fit", "eval"))
o = ev["open_set"]
print(json.dumps({
    "known_people": len(fit["classes"]), "strangers_people": len(ev["unknown_classes"]),
    "threshold": fit["open_set"]["threshold"], "calibrated_false_reject_rate": fit["open_set"]["false_reject_rate"],
    "known_faces": o["knowns"], "known_rejected": o["false_reject_rate"],
    "stranger_faces": o["strangers"], "strangers_rejected": o["stranger_rejection_rate"],
    "closed_set_accuracy": ev["accuracy"],
}))
PY

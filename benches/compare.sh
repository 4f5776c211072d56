#!/usr/bin/env bash
# `qcyn compare` timed: once with an empty feature cache (the backbone runs once per image and
# model) and once more with the features cached (only the heads run), then the table.
#
#   benches/compare.sh DATA [COMPARE OPTIONS...]
#   e.g. benches/compare.sh ../shared/data/hymenoptera --repeats 5
#        benches/compare.sh ../shared/data/orl_faces --models mobilenetv2,efficientnet_lite0,face --repeats 5
#
# The binary is $QCYN, else the release build (cargo build --release; $CARGO_TARGET_DIR is honoured).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
Q="${QCYN:-${CARGO_TARGET_DIR:-$REPO/target}/release/qcyn}"
data="$1"
shift
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
run() {
  local start end code=0
  start=$(date +%s.%N)
  "$Q" compare "$data" --cache "$tmp/cache" --quiet "$@" || code=$?
  end=$(date +%s.%N)
  [ "$code" -eq 0 ] || [ "$code" -eq 3 ] || exit "$code"
  echo "$start $end" >&3
}
exec 3>"$tmp/times"
run "$@" --json >"$tmp/cold.json"
run "$@" >"$tmp/warm.txt"
exec 3>&-
python3 - "$tmp/times" "$tmp/cold.json" <<'PY'
import json, sys
times = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
r = json.load(open(sys.argv[2]))
runs = sum(m["backbone_runs"] for m in r["models"])
print(f"wall time, empty cache: {times[0][1]-times[0][0]:.1f} s ({runs} backbone runs; "
      f"fitting and scoring {r['evaluate_seconds']:.1f} s)")
print(f"wall time, features cached: {times[1][1]-times[1][0]:.1f} s")
PY
cat "$tmp/warm.txt"

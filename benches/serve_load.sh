#!/usr/bin/env bash
# `qcyn serve` under load, against `qcyn predict` on the same photos (loopback only, bounded):
#
#   benches/serve_load.sh BUNDLE PHOTO_DIR [N_PHOTOS] [REQUESTS] [MODELS_DIR]
#
# Starts the release server on a free loopback port, posts N_PHOTOS (default 64) photos of
# PHOTO_DIR round-robin from 1, 4 and 16 clients, REQUESTS (default 256) per level
# (benches/serve_load.py: requests/s, ms per image = wall / requests, p50/p99 latency), stops it
# with SIGTERM, then times `qcyn predict --no-cache` on the same photos (the whole command: start,
# model load, every photo) for the per-image comparison. Threads: all cores for both.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QCYN="${QCYN:-$REPO/target/release/qcyn}"
BUNDLE="${1:?usage: benches/serve_load.sh BUNDLE PHOTO_DIR [N_PHOTOS] [REQUESTS] [MODELS_DIR]}"
PHOTOS="${2:?usage: benches/serve_load.sh BUNDLE PHOTO_DIR [N_PHOTOS] [REQUESTS] [MODELS_DIR]}"
N="${3:-64}"
REQUESTS="${4:-256}"
MODELS=()
if [ $# -ge 5 ]; then MODELS=(--models-dir "$5"); fi
[ -x "$QCYN" ] || { echo "$QCYN is missing: cargo build --release" >&2; exit 1; }

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mapfile -t FILES < <(find "$PHOTOS" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort | head -n "$N")
[ "${#FILES[@]}" -gt 0 ] || { echo "no photos in $PHOTOS" >&2; exit 1; }
echo "photos: ${#FILES[@]} from $PHOTOS; bundle: $BUNDLE; $(nproc) cores" >&2

# shellcheck disable=SC2086  # QCYN_SERVE_ARGS: extra serve options, split on spaces
"$QCYN" "${MODELS[@]}" serve --bundle "$BUNDLE" --addr 127.0.0.1:0 ${QCYN_SERVE_ARGS:-} 2> "$WORK/serve.err" &
SERVER=$!
PORT=""
for _ in $(seq 1 600); do
    PORT="$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$WORK/serve.err")"
    [ -n "$PORT" ] && break
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "the server did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }

echo "== qcyn serve (port $PORT)" >&2
python3 "$REPO/benches/serve_load.py" --port "$PORT" --pid "$SERVER" --clients 1,4,16 --requests "$REQUESTS" "${FILES[@]}"
python3 - "$PORT" <<'EOF' >&2
import json, sys, urllib.request
m = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/model"))
print(f"backbone runs {m['backbone_runs']} for {m['images_run']} images "
      f"(mean batch {m['images_run'] / max(1, m['backbone_runs']):.2f})")
EOF
kill -TERM "$SERVER"
wait "$SERVER"
SERVER=""

echo "== qcyn predict --no-cache, the same ${#FILES[@]} photos (whole command)" >&2
for round in 1 2; do
    START="$(date +%s.%N)"
    "$QCYN" "${MODELS[@]}" --quiet predict --bundle "$BUNDLE" --no-cache --json "${FILES[@]}" > /dev/null
    END="$(date +%s.%N)"
    python3 -c "import sys, json; s = float(sys.argv[2]) - float(sys.argv[1]); n = int(sys.argv[3]); print(json.dumps({'predict_round': int(sys.argv[4]), 'images': n, 'seconds': round(s, 3), 'ms_per_image': round(1000 * s / n, 2)}))" "$START" "$END" "${#FILES[@]}" "$round"
done

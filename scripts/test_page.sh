#!/usr/bin/env bash
# Drives `qcyn serve`'s page in headless Chromium: starts the server on a free loopback port, opens
# `/?try=<data: URL of a photo>` (the page posts that photo to /v1/predict as a dropped one would
# be), dumps the DOM once the answer is drawn, and checks that the page shows the label that
# `qcyn predict` gives for the same photo; then takes a screenshot, stops the server with SIGTERM
# and checks it exits 0.
#
#   scripts/test_page.sh                      # a tiny fixture bundle fitted here, on made-up PNGs
#   scripts/test_page.sh BUNDLE PHOTO [MODELS_DIR]
#
# The screenshot goes to $QCYN_PAGE_SHOT (default: a temporary file, whose path is printed).
# Without Chromium (Debian: apt-get install chromium) it prints a note and exits 0.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QCYN="${QCYN:-$REPO/target/debug/qcyn}"
PY="$REPO/.qcyn/venv/bin/python"
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$CHROMIUM" ]; then
    echo "test_page: chromium is not installed; skipped (apt-get install chromium)"
    exit 0
fi
[ -x "$QCYN" ] || { echo "test_page: $QCYN is missing: cargo build first" >&2; exit 1; }
[ -x "$PY" ] || { echo "test_page: $PY is missing: run scripts/setup first" >&2; exit 1; }

WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then kill "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
export QCYN_CACHE_DIR="$WORK/cache"

MODELS=()
if [ $# -ge 2 ]; then
    BUNDLE="$1"
    PHOTO="$2"
    if [ $# -ge 3 ]; then MODELS=(--models-dir "$3"); fi
else
    MODELS=(--models-dir "$REPO/tests/fixtures/models")
    "$PY" - "$WORK/data" <<'EOF'
import os, sys
from PIL import Image
root = sys.argv[1]
for k, (name, colour) in enumerate([("red", (220, 40, 40)), ("blue", (40, 60, 220))]):
    os.makedirs(f"{root}/{name}", exist_ok=True)
    for i in range(8):
        im = Image.new("RGB", (8, 8), colour)
        im.putpixel((i % 8, (3 * i) % 8), ((37 * i) % 256, (91 * i + k) % 256, (53 * i) % 256))
        im.save(f"{root}/{name}/p{i}.png")
EOF
    "$QCYN" "${MODELS[@]}" --quiet fit "$WORK/data" --model tiny --val-per-class 2 --no-group \
        --l2 1 --out "$WORK/bundle" > /dev/null
    BUNDLE="$WORK/bundle"
    PHOTO="$WORK/data/red/p1.png"
fi

# The photo, at most 224 pixels a side as a JPEG (the URL must stay under the server's 64 KiB),
# as a file and as a data: URL.
SMALL="$WORK/photo.jpg"
QUERY="$("$PY" - "$PHOTO" "$SMALL" <<'EOF'
import base64, sys, urllib.parse
from PIL import Image, ImageOps
im = ImageOps.exif_transpose(Image.open(sys.argv[1])).convert("RGB")
im.thumbnail((224, 224))
im.save(sys.argv[2], quality=90)
data = "data:image/jpeg;base64," + base64.b64encode(open(sys.argv[2], "rb").read()).decode()
print(urllib.parse.quote(data, safe=""))
EOF
)"
WANT="$("$QCYN" "${MODELS[@]}" --quiet predict --bundle "$BUNDLE" "$SMALL" --json \
    | "$PY" -c 'import json, sys; print(json.load(sys.stdin)[0]["label"])')"

"$QCYN" "${MODELS[@]}" serve --bundle "$BUNDLE" --addr 127.0.0.1:0 2> "$WORK/serve.err" &
SERVER=$!
PORT=""
for _ in $(seq 1 600); do
    PORT="$(sed -n 's|^listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "$WORK/serve.err")"
    [ -n "$PORT" ] && break
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { echo "test_page: the server did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }

URL="http://127.0.0.1:$PORT/?try=$QUERY"
CHROME=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
    --user-data-dir="$WORK/profile" --virtual-time-budget=20000)
# The page posts the photo and draws the answer; on a loaded machine the DOM can be dumped before
# the answer is back, so the dump is retried (5 tries at most) until a label is drawn.
GOT=""
for _ in 1 2 3 4 5; do
    timeout 120 "$CHROMIUM" "${CHROME[@]}" --dump-dom "$URL" > "$WORK/dom.html" 2>> "$WORK/chromium.err" || true
    GOT="$(sed -n 's/.*data-label="\([^"]*\)".*/\1/p' "$WORK/dom.html" | head -n 1)"
    [ -n "$GOT" ] && break
done
SHOT="${QCYN_PAGE_SHOT:-$WORK/page.png}"
[ -n "${QCYN_PAGE_SHOT:-}" ] || SHOT="$(mktemp --suffix=.png)"
timeout 120 "$CHROMIUM" "${CHROME[@]}" --window-size=1000,760 --screenshot="$SHOT" "$URL" \
    > /dev/null 2>> "$WORK/chromium.err"

kill -TERM "$SERVER"
CODE=0
wait "$SERVER" || CODE=$?
SERVER=""
if [ "$GOT" != "$WANT" ]; then
    echo "test_page: the page shows label '$GOT', predict says '$WANT'" >&2
    grep -o 'class="card"[^>]*>' "$WORK/dom.html" >&2 || true
    exit 1
fi
[ "$CODE" -eq 0 ] || { echo "test_page: the server exited $CODE after SIGTERM" >&2; exit 1; }
echo "test_page: the page labels the photo '$GOT', as predict does; screenshot: $SHOT"

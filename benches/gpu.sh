#!/usr/bin/env bash
# Issue 12's GPU figures, prepared for a machine with an NVIDIA GPU (none was lent to the session
# that wrote it, so it has not been run on one):
#   1. `qcyn bench --device cuda` of Xception71 (random weights: latency only) and MobileNetV2 at
#      batch 1, 8, 32 and 128, with the provider the report says was used
#   2. the same on the CPU, for the ratio
#   3. `qcyn extract --device cuda` of a few hundred photos (cold cache), against the CPU
#
#   benches/gpu.sh PHOTOS [OUT_DIR]     PHOTOS: a folder-per-class dataset of a few hundred photos
#
# Needs `scripts/setup --gpu` (onnxruntime-gpu 1.31.1 and the NVIDIA CUDA 13 / cuDNN 9 wheels in
# runtime/gpu/) and `cargo build --release`. Writes one JSON file per run into OUT_DIR (default
# a temporary folder) and prints a summary JSON on stdout. A run that fails prints its error and
# the script goes on, so one missing piece does not hide the others.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
Q="${QCYN:-$REPO/target/release/qcyn}"
PY="${PYTHON:-python3}"
photos="${1:?usage: benches/gpu.sh PHOTOS [OUT_DIR]}"
out="${2:-$(mktemp -d)}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1 || true
cat "$out/gpu.txt" >&2

run() { # name, then qcyn arguments
  local name="$1"; shift
  if ! "$Q" "$@" --json --quiet >"$out/$name.json" 2>"$out/$name.err"; then
    printf 'gpu.sh: %s failed: %s\n' "$name" "$(tail -c 600 "$out/$name.err")" >&2
  fi
}
for model in mobilenetv2 xception71; do
  for device in cuda cpu; do
    batches=1,8,32,128
    [ "$device" = cpu ] && batches=1,8,32
    run "bench-$model-$device" bench --model "$model" --device "$device" --batch "$batches" --seconds 4
  done
done
for device in cuda cpu; do
  QCYN_CACHE_DIR="$out/cache-$device" run "extract-$device" extract "$photos" --model mobilenetv2 --device "$device" --batch 64
done

"$PY" - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name + ".json")
    try:
        return json.load(open(p))
    except Exception:
        return None
summary = {"gpu": open(os.path.join(out, "gpu.txt")).read().strip()}
for model in ("mobilenetv2", "xception71"):
    for device in ("cuda", "cpu"):
        r = load(f"bench-{model}-{device}")
        summary[f"bench_{model}_{device}"] = None if r is None else {
            "provider": r["provider"], "precision": r["precision"],
            "images_per_s": {x["batch"]: round(x["images_per_s"], 1) for x in r["results"]},
            "p50_ms": {x["batch"]: round(x["p50_ms"], 2) for x in r["results"]}}
for device in ("cuda", "cpu"):
    r = load(f"extract-{device}")
    summary[f"extract_{device}"] = None if r is None else {
        "images": r["images"], "seconds": round(r["seconds"], 2), "images_per_s": round(r["images_per_s"], 1)}
print(json.dumps(summary, indent=1))
PY

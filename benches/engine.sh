#!/usr/bin/env bash
# Issue 2's targets in one run, so the ratios compare like with like on a noisy machine:
#   1. extract throughput: qcyn (cold cache) vs the Python pipeline (PIL + onnxruntime 1.32, batch 32)
#   2. a second, unchanged extract: its time as a share of the first
#   3. peak memory (max RSS) of the cold extract
#   4. backbone-only throughput: `qcyn bench` vs Python onnxruntime on the same graph
#
#   benches/engine.sh DATA [THREADS]       e.g. benches/engine.sh ../shared/data/hymenoptera 2
# Prints one JSON object. Needs scripts/setup and `cargo build --release`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
Q="$REPO/target/release/qcyn"
PY="$REPO/.qcyn/venv/bin/python"
data="$1" threads="${2:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export QCYN_CACHE_DIR="$tmp/cache"
mob="$REPO/models/onnx/mobilenetv2.onnx" xce="$REPO/models/onnx/xception71-random.onnx"

"$PY" "$REPO/benches/python_baseline.py" extract "$data" --model-file "$mob" --batch 32 --threads "$threads" >"$tmp/py_extract.json"
/usr/bin/time -f '%M' -o "$tmp/rss" "$Q" extract "$data" --model mobilenetv2 --threads "$threads" --json --quiet >"$tmp/cold.json" || [ $? -eq 3 ]
"$Q" extract "$data" --model mobilenetv2 --threads "$threads" --json --quiet >"$tmp/warm.json" || [ $? -eq 3 ]
"$Q" bench --model mobilenetv2 --batch 1,8,32 --threads "$threads" --seconds 4 --json --quiet >"$tmp/q_mob.json"
"$PY" "$REPO/benches/python_baseline.py" backbone --model-file "$mob" --size 224 --batch 1,8,32 --threads "$threads" --iters 30 >"$tmp/py_mob.json"
"$Q" bench --model xception71 --batch 1,8 --threads "$threads" --seconds 6 --json --quiet >"$tmp/q_xce.json"
"$PY" "$REPO/benches/python_baseline.py" backbone --model-file "$xce" --size 299 --batch 1,8 --threads "$threads" --iters 10 >"$tmp/py_xce.json"

"$PY" - "$tmp" <<'PY'
import json, sys
t = sys.argv[1]
j = lambda n: json.load(open(f"{t}/{n}.json"))
py, cold, warm = j("py_extract"), j("cold"), j("warm")
def backbone(q, p):
    pr = {r["batch"]: r for r in p["results"]}
    return [{"batch": r["batch"], "qcyn_images_per_s": round(r["images_per_s"], 1),
             "python_images_per_s": round(pr[r["batch"]]["images_per_s"], 1),
             "ratio": round(r["images_per_s"] / pr[r["batch"]]["images_per_s"], 3)} for r in q["results"]]
print(json.dumps({
    "images": cold["images"],
    "extract": {"qcyn_images_per_s": round(cold["images_per_s"], 1), "python_images_per_s": round(py["images_per_s"], 1),
                "ratio": round(cold["images_per_s"] / py["images_per_s"], 2), "qcyn_seconds": round(cold["seconds"], 2)},
    "second_extract": {"seconds": round(warm["seconds"], 3), "backbone_runs": warm["backbone_runs"],
                       "share_of_first": round(warm["seconds"] / cold["seconds"], 4)},
    "extract_peak_rss_mib": round(int(open(f"{t}/rss").read().split()[-1]) / 1024, 1),
    "backbone_mobilenetv2": backbone(j("q_mob"), j("py_mob")),
    "backbone_xception71_random_weights": backbone(j("q_xce"), j("py_xce")),
}, indent=1))
PY

#!/usr/bin/env bash
# What `predict` costs beyond the backbone: median wall time of `qcyn predict` and of
# `qcyn extract` (same images, no cache, same decode and backbone) over 8 alternating runs; the
# difference per image is the head, the bundle checks and the output.
#
#   benches/predict.sh BUNDLE DIR
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python3 - "$REPO/target/release/qcyn" "$1" "$2" <<'PY'
import json, statistics, subprocess, sys, time
q, bundle, data = sys.argv[1:]
def run(args):
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True)
    return time.perf_counter() - t, out.stdout
ex, pr = [], []
for _ in range(8):
    t, out = run([q, "extract", data, "--no-cache", "--quiet", "--json"])
    ex.append(t)
    n = json.loads(out)["images"]
    pr.append(run([q, "predict", "--bundle", bundle, data, "--no-cache", "--quiet", "--json"])[0])
e, p = statistics.median(ex), statistics.median(pr)
print(json.dumps({"images": n, "extract_s": round(e, 3), "predict_s": round(p, 3),
                  "predict_overhead_ms_per_image": round((p - e) / n * 1000, 3)}))
PY

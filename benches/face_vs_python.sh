#!/usr/bin/env bash
# Face-mode `qcyn extract --model face --no-cache` against the Python YuNet + SFace pipeline of
# benches/face_python.py (same two graphs, every face embedded), on the same large photos, in turn
# (qcyn, Python, qcyn, Python, ...) after one warm-up each: the median wall times, their ratio and
# the ratio pair by pair.
#
#   benches/face_vs_python.sh [DIR] [RUNS]
#
# DIR defaults to a folder of 60 large photos that benches/face_make.py builds from the registry
# photos in .qcyn/testdata/faces (into a temporary folder). Uses target/release/qcyn (or $QCYN)
# and .qcyn/venv/bin/python; THREADS (default 2) is each side's inference threads.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.qcyn/venv/bin/python"
QCYN="${QCYN:-$REPO/target/release/qcyn}"
DIR="${1:-}"
RUNS="${2:-5}"
if [ -z "$DIR" ]; then
  DIR="$(mktemp -d)/photos"
  "$PY" "$REPO/benches/face_make.py" "$DIR" --count 60 >/dev/null
fi
"$PY" - "$QCYN" "$PY" "$REPO" "$DIR" "$RUNS" "${THREADS:-2}" <<'PY'
import json, statistics, subprocess, sys, time
q, py, repo, data, runs, threads = sys.argv[1:]
def run(args):
    t = time.perf_counter()
    subprocess.run(args, capture_output=True, check=True)
    return time.perf_counter() - t
a = [q, "--models-dir", f"{repo}/models", "extract", data, "--model", "face", "--no-cache",
     "--threads", threads, "--quiet"]
b = [py, f"{repo}/benches/face_python.py", data, "--threads", threads]
run(a); run(b)
qs, ps = [], []
for _ in range(int(runs)):
    qs.append(run(a))
    ps.append(run(b))
print(json.dumps({"qcyn_s": round(statistics.median(qs), 3), "python_s": round(statistics.median(ps), 3),
                  "speedup_median": round(statistics.median(ps) / statistics.median(qs), 3),
                  "speedup_pairwise_median": round(statistics.median(p / t for p, t in zip(ps, qs)), 3)}))
PY

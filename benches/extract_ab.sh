#!/usr/bin/env bash
# `qcyn extract` (cold, --no-cache) against the plain Python pipeline (PIL + onnxruntime, batch 32)
# on the same photos, run alternately (qcyn, Python, qcyn, Python, ...) so that a drifting machine
# moves both alike. Prints each run's wall time and peak memory, then the medians and the ratio of
# the medians (Python / qcyn: above 1, qcyn is faster).
#
#   benches/extract_ab.sh DATA [MODEL] [PRECISION] [RUNS] [THREADS]
#   e.g. benches/extract_ab.sh ../shared/data/hymenoptera mobilenetv2 fp32 5 2
# The Python side always runs the fp32 graph (it is the baseline the issue names). Needs
# scripts/setup and `cargo build --release`.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$1" model="${2:-mobilenetv2}" precision="${3:-fp32}" runs="${4:-5}" threads="${5:-2}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
q=("$REPO/target/release/qcyn" extract "$data" --model "$model" --precision "$precision"
   --no-cache --threads "$threads" --quiet)
py=("$REPO/.qcyn/venv/bin/python" "$REPO/benches/python_baseline.py" extract "$data"
    --model-file "$REPO/models/onnx/$model.onnx" --manifest "$REPO/models/$model.toml"
    --batch 32 --threads "$threads")
for i in $(seq "$runs"); do
  /usr/bin/time -f '%e %M' -o "$tmp/q$i" "${q[@]}" >/dev/null || [ $? -eq 3 ]
  /usr/bin/time -f '%e %M' -o "$tmp/p$i" "${py[@]}" >/dev/null 2>&1
  echo "run $i: qcyn $(cut -d' ' -f1 "$tmp/q$i") s, $(( $(cut -d' ' -f2 "$tmp/q$i") / 1024 )) MiB; python $(cut -d' ' -f1 "$tmp/p$i") s, $(( $(cut -d' ' -f2 "$tmp/p$i") / 1024 )) MiB"
done
python3 - "$tmp" "$runs" <<'PY'
import statistics, sys
t, n = sys.argv[1], int(sys.argv[2])
read = lambda k: [float(open(f"{t}/{k}{i}").read().split()[0]) for i in range(1, n + 1)]
q, p = statistics.median(read("q")), statistics.median(read("p"))
print(f"median wall: qcyn {q:.3f} s, python {p:.3f} s; python / qcyn = {p / q:.2f}x")
PY

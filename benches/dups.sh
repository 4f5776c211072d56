#!/usr/bin/env bash
# Near-duplicate thresholds, measured. Builds synthetic copies of registry photos (the scikit-image
# wheel's and the face_recognition sdist's test photos, and .qcyn/testdata/): for each photo a
# flip, a 90% centre crop, a JPEG re-save at quality 70, a half-size resize, a 5° rotation and a
# colour jitter. Then, with MODEL's features (through a temporary feature cache) and qcyn's
# perceptual hash (benches/dups.rs dumps both per image), it prints:
#   - recall: share of (photo, copy) pairs joined, per kind of copy, for the hash, the features,
#     and both (the rule `qcyn dups` applies);
#   - false pairs: share of pairs of distinct photos joined: the registry photos among themselves,
#     and every pair of distinct photos within one class of each DATA folder given (measuring
#     only: e.g. ../shared/data/hymenoptera ../shared/data/orl_faces);
#   - the cost per image beyond cached features (content key + perceptual hash; comparing).
#
#   benches/dups.sh MODEL [DATA...]        e.g. benches/dups.sh mobilenetv2 ../shared/data/hymenoptera
# Env: DUPS_HASH (default 24), DUPS_COSINE (default: the model manifest's near_duplicate_cosine),
# DUPS_NCC and DUPS_DETAIL (default 0.9 each)
# are the thresholds the summary uses; a grid around them is printed too. DUPS_EVIDENCE=FILE keeps
# the per-image evidence (to try other rules with benches/dups_measure.py).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.qcyn/venv/bin/python"
[ -x "$PY" ] || { echo "dups.sh: run scripts/setup first (it creates .qcyn/venv)" >&2; exit 1; }
model="$1"
shift
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$PY" "$REPO/benches/dups_make.py" "$REPO" "$tmp/synthetic"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
(cd "$REPO" && QCYN_CACHE_DIR="$tmp/cache" cargo bench --quiet --profile dev --bench dups -- \
  "$model" "$tmp/synthetic" "$@") >"$tmp/evidence.jsonl"
cosine="${DUPS_COSINE:-$(sed -n 's/^near_duplicate_cosine *= *\([0-9.]*\).*/\1/p' "$REPO/models/$model.toml")}"
[ -z "${DUPS_EVIDENCE:-}" ] || cp "$tmp/evidence.jsonl" "$DUPS_EVIDENCE"
"$PY" "$REPO/benches/dups_measure.py" "$tmp/evidence.jsonl" "${DUPS_HASH:-24}" "${cosine:-none}" "${DUPS_NCC:-0.9}" "${DUPS_DETAIL:-0.9}"

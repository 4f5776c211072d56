"""Recall and false pairs of qcyn's near-duplicate rule, from benches/dups.rs's evidence lines.

    dups_measure.py EVIDENCE.jsonl HASH_DISTANCE COSINE|none
"""
import json, sys
import numpy as np

path, max_d = sys.argv[1], int(sys.argv[2])
cos_t = None if sys.argv[3] == "none" else float(sys.argv[3])
rows, cost = [], None
for line in open(path):
    r = json.loads(line)
    if "cost" in r:
        cost = r["cost"]
    else:
        rows.append(r)

def dist(a, b):
    if a["hash"] is None or b["hash"] is None:
        return None
    x, y, ym = int(a["hash"]), int(b["hash"]), int(b["mirrored"])
    return min(bin(x ^ y).count("1"), bin(x ^ ym).count("1"))

def cos(a, b):
    if a["feature"] is None or b["feature"] is None:
        return None
    return float(np.dot(a["feature"], b["feature"]))

def joined(a, b, d_t=max_d, c_t=cos_t):
    if a["key"] is not None and a["key"] == b["key"]:
        return True
    d = dist(a, b)
    if d is not None and d <= d_t:
        return True
    c = cos(a, b)
    return c is not None and c_t is not None and c >= c_t

def stem(r):
    return r["path"].rsplit("/", 1)[-1].split(".")[0]

synthetic = [r for r in rows if "/synthetic" in r["data"]]
origs = {r["class"]: r for r in synthetic if stem(r) == "orig"}
positives = [(origs[r["class"]], r, stem(r)) for r in synthetic if stem(r) != "orig"]
negatives = {"registry photos, distinct": []}
names = sorted(origs)
for i, a in enumerate(names):
    for b in names[i + 1:]:
        negatives["registry photos, distinct"].append((origs[a], origs[b]))
for r in rows:
    pass
by_data = {}
for r in rows:
    if "/synthetic" not in r["data"]:
        by_data.setdefault((r["data"], r["class"]), []).append(r)
for (data, cls), members in sorted(by_data.items()):
    key = data.rstrip("/").rsplit("/", 1)[-1] + ", same class"
    lst = negatives.setdefault(key, [])
    for i, a in enumerate(members):
        for b in members[i + 1:]:
            lst.append((a, b))

def rates(d_t, c_t, use_hash=True, use_feat=True):
    dd = d_t if use_hash else -1
    cc = c_t if use_feat else None
    kinds = {}
    for a, b, k in positives:
        kinds.setdefault(k, []).append(joined(a, b, dd, cc))
    rec = {k: sum(v) / len(v) for k, v in sorted(kinds.items())}
    allp = [x for v in kinds.values() for x in v]
    rec["all"] = sum(allp) / len(allp)
    fp = {k: (sum(joined(a, b, dd, cc) for a, b in v) / max(1, len(v)), len(v)) for k, v in negatives.items()}
    return rec, fp

print(f"{len(origs)} registry photos, {len(positives)} (photo, copy) pairs; "
      + "; ".join(f"{k}: {len(v)} pairs" for k, v in negatives.items()))
for label, uh, uf in [("hash only", True, False), ("features only", False, True), ("both (qcyn dups)", True, True)]:
    if uf and cos_t is None:
        continue
    rec, fp = rates(max_d, cos_t, uh, uf)
    print(f"\n{label}: hash distance <= {max_d if uh else '-'}, cosine >= {cos_t if uf else '-'}")
    print("  recall " + "  ".join(f"{k} {v:.3f}" for k, v in rec.items()))
    print("  false pairs " + "  ".join(f"{k} {v[0]*100:.2f}% of {v[1]}" for k, v in fp.items()))

print("\ngrid (recall all / worst false-pair rate over the same-class sets):")
for d in [6, 8, 10, 12, 14]:
    cells = []
    for c in ([None] if cos_t is None else [None, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96]):
        rec, fp = rates(d, c, True, c is not None)
        same = [v[0] for k, v in fp.items() if "same class" in k] or [fp["registry photos, distinct"][0]]
        cells.append(f"c>={c}: {rec['all']:.3f}/{max(same)*100:.2f}%")
    print(f"  d<={d}: " + "  ".join(cells))
# Hash distance and cosine distributions, for choosing.
def q(v):
    v = sorted(x for x in v if x is not None)
    return "n/a" if not v else f"min {v[0]:.3g} p5 {v[len(v)//20]:.3g} median {v[len(v)//2]:.3g} p95 {v[len(v)*19//20]:.3g} max {v[-1]:.3g}"
print("\ndistributions:")
for k in sorted({k for _, _, k in positives}):
    ps = [(a, b) for a, b, kk in positives if kk == k]
    print(f"  copies {k}: hash {q([dist(a, b) for a, b in ps])}; cosine {q([cos(a, b) for a, b in ps])}")
for k, v in negatives.items():
    print(f"  {k}: hash {q([dist(a, b) for a, b in v])}; cosine {q([cos(a, b) for a, b in v])}")
    worst = sorted(((cos(a, b) or 0, dist(a, b), a["path"], b["path"]) for a, b in v if joined(a, b)), reverse=True)[:5]
    for c, d, pa, pb in worst:
        print(f"    joined: cos {c:.3f} hash {d}  {pa}  {pb}")
if cost:
    print("\ncost beyond cached features:", json.dumps(cost))

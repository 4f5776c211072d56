"""Recall and false pairs of qcyn's near-duplicate rule, replayed on benches/dups.rs's evidence.

    dups_measure.py EVIDENCE.jsonl HASH COSINE|none NCC DETAIL

A pair is joined when its content is identical, or when it is a candidate (hash distance <= HASH or
cosine >= COSINE) whose aligned pixels correlate at >= NCC and their fine detail at >= DETAIL; joined images form groups. Ground truth
per folder given to the bench:
  - synthetic copies (benches/dups_make.py, files orig.* and one per kind of copy): the images of
    one folder are one photo;
  - a tutorial-style set (benches/tutorial_make.py, files STEM_augNN.jpg): the copies of one STEM
    are one photo;
  - anything else (e.g. ../shared/data/hymenoptera, orl_faces): every image is its own photo.
Recall: share of copies that end in the group of their photo (synthetic: per kind of copy, with
orig; tutorial: share of same-photo pairs). False pairs: share of pairs of distinct photos of one
class that end in one group. A grid around the given thresholds follows.
"""
import collections, json, os, re, sys

path, H, C, N = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
D = float(sys.argv[5])
C = None if C == "none" else float(C)
images, pairs, cost = collections.defaultdict(list), collections.defaultdict(list), None
for line in open(path):
    r = json.loads(line)
    if "cost" in r:
        cost = r["cost"]
    elif "image" in r:
        images[r["image"]["data"]].append(r["image"])
    else:
        pairs[r["pair"]["data"]].append(r["pair"])

AUG = re.compile(r"^(.*)_aug\d+$")


def photo_of(data, img):
    stem = os.path.splitext(os.path.basename(img["path"]))[0]
    if all(os.path.basename(i["path"]).startswith("orig.") or True for i in images[data]) and \
            any(os.path.basename(i["path"]).startswith("orig.") for i in images[data]):
        return ("syn", img["class"])
    m = AUG.match(stem)
    if m:
        return ("tut", img["class"], m.group(1))
    return ("own", img["path"])


def groups(data, h, c, n, d):
    parent = {i["path"]: i["path"] for i in images[data]}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for p in pairs[data]:
        ok = p["by"] == "identical" or (
            ((p["hash_distance"] is not None and p["hash_distance"] <= h)
             or (c is not None and p["cosine"] is not None and p["cosine"] >= c))
            and p["ncc"] is not None and p["ncc"] >= n and p["detail"] >= d)
        if ok:
            ra, rb = root(p["a"]), root(p["b"])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {k: root(k) for k in parent}


def measure(data, h, c, n, d):
    g = groups(data, h, c, n, d)
    imgs = images[data]
    by_class = collections.defaultdict(list)
    for i in imgs:
        by_class[i["class"]].append(i)
    same_tot = same_hit = diff_tot = diff_hit = 0
    kinds = collections.defaultdict(lambda: [0, 0])
    for cls, members in by_class.items():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = members[x], members[y]
                joined = g[a["path"]] == g[b["path"]]
                if photo_of(data, a) == photo_of(data, b):
                    same_tot += 1
                    same_hit += joined
                    names = [os.path.basename(a["path"]), os.path.basename(b["path"])]
                    origs = [m for m in names if m.startswith("orig.")]
                    if origs:
                        kind = os.path.splitext([m for m in names if m not in origs][0])[0]
                        kinds[kind][0] += 1
                        kinds[kind][1] += joined
                else:
                    diff_tot += 1
                    diff_hit += joined
    # Pairs of distinct photos across classes joined (synthetic: every photo is a class).
    cross_tot = cross_hit = 0
    if photo_of(data, imgs[0])[0] == "syn":
        for x in range(len(imgs)):
            for y in range(x + 1, len(imgs)):
                if imgs[x]["class"] != imgs[y]["class"]:
                    cross_tot += 1
                    cross_hit += g[imgs[x]["path"]] == g[imgs[y]["path"]]
        diff_tot, diff_hit = cross_tot, cross_hit
    return same_tot, same_hit, diff_tot, diff_hit, dict(kinds)


def fmt(hit, tot):
    return f"{hit / tot:.3f} ({hit}/{tot})" if tot else "-"


print(f"rule: hash <= {H} or cosine >= {C}, then aligned NCC >= {N} and detail NCC >= {D}")
for data in images:
    st, sh, dt, dh, kinds = measure(data, H, C, N, D)
    line = f"{data}: {len(images[data])} images; recall {fmt(sh, st)}; false pairs {fmt(dh, dt)}"
    if kinds:
        line += "; per kind: " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in sorted(kinds.items()))
    print(line)
print("\ngrid: recall / false-pair share per folder")
hs, cs = sorted({6, 12, 18, H}), ([None] if C is None else sorted({0.7, 0.8, 0.9, C}))
ns, ds = sorted({0.85, 0.9, 0.95, N}), sorted({0.7, 0.8, 0.85, 0.9, D})
for h in hs:
    for c in cs:
        for n in ns:
            for d in ds:
                cells = []
                for data in images:
                    st, sh, dt, dh, _ = measure(data, h, c, n, d)
                    cells.append(f"{sh / st if st else float('nan'):.3f}/{dh / dt if dt else 0:.4f}")
                print(f"hash<={h:2d} cos>={c} ncc>={n:.2f} detail>={d:.2f}: " + "  ".join(cells))
if cost:
    print(f"\ncost beyond cached features: content key + hash + thumbnails "
          f"{cost['hash_ms_per_image']:.2f} ms/image, the default rule "
          f"{cost['rule_ms_per_image']:.2f} ms/image ({cost['images']} images, "
          f"{cost['threads']} threads, {cost['profile']})")

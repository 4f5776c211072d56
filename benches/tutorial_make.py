"""A dataset built the tutorial's way, from any folder-per-class dataset, for benches/tutorial.sh.

    tutorial_make.py SRC OUT [--photos 4] [--copies 18] [--seed 0]

For each class of SRC, takes PHOTOS photos (seeded choice) and writes COPIES augmented copies of
each to OUT/train/<class>/ (random horizontal flip, a random crop keeping 70-100% of each side,
brightness and contrast jitter of up to 15%, resized back to the photo's size, JPEG quality 90),
as the tutorial grew 20-30 photos per person into 70-80. Every other photo of the class is
linked into OUT/unseen/<class>/: photos the bundle never saw in any form. Deterministic.
"""
import argparse, os, random
from PIL import Image, ImageEnhance, ImageOps

EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def augment(img, rng):
    w, h = img.size
    fw, fh = rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0)
    cw, ch = max(1, round(w * fw)), max(1, round(h * fh))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))
    return ImageEnhance.Contrast(out).enhance(rng.uniform(0.85, 1.15))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--copies", type=int, default=18)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for cls in sorted(os.listdir(a.src)):
        d = os.path.join(a.src, cls)
        if not os.path.isdir(d):
            continue
        files = sorted(f for f in os.listdir(d) if f.lower().endswith(EXTS))
        rng.shuffle(files)
        chosen, rest, taken = [], [], 0
        for f in files:
            if taken < a.photos:
                try:
                    img = ImageOps.exif_transpose(Image.open(os.path.join(d, f))).convert("RGB")
                except OSError:
                    rest.append(f)
                    continue
                chosen.append((f, img))
                taken += 1
            else:
                rest.append(f)
        os.makedirs(os.path.join(a.out, "train", cls), exist_ok=True)
        os.makedirs(os.path.join(a.out, "unseen", cls), exist_ok=True)
        for f, img in chosen:
            stem = os.path.splitext(f)[0]
            for k in range(a.copies):
                augment(img, rng).save(
                    os.path.join(a.out, "train", cls, f"{stem}_aug{k:02d}.jpg"), "JPEG", quality=90)
        for f in rest:
            os.symlink(os.path.abspath(os.path.join(d, f)), os.path.join(a.out, "unseen", cls, f))
        print(f"tutorial_make: {cls}: {len(chosen)} photos x {a.copies} copies, {len(rest)} unseen")


if __name__ == "__main__":
    main()

"""Synthetic near-duplicates of registry photos, for benches/dups.sh and benches/tutorial.sh.

    dups_make.py REPO OUT            OUT/<photo>/{orig,flip,crop90,jpeg70,resize50,rot5,jitter}.*

Photos: .qcyn/testdata/ (scripts/fetch_test_images, scripts/fetch_reference_images) and the
photographs of the scikit-image 0.24.0 wheel in .qcyn/downloads, deduplicated by content, never
/work/shared/data. Deterministic.
"""
import hashlib, io, os, sys, zipfile
from PIL import Image, ImageEnhance, ImageOps

# Photographs of the scikit-image wheel (drawings, binary masks and tiny images left out).
SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
           "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
           "ihc.png", "moon.png", "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg",
           "text.png"]
WHEEL = "scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def photos(repo):
    """(name, PIL image) of every distinct registry photo."""
    seen, out = set(), []
    def add(name, data):
        h = hashlib.sha256(data).hexdigest()
        if h in seen:
            return
        seen.add(h)
        out.append((name, ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")))
    test = os.path.join(repo, ".qcyn", "testdata")
    for sub in sorted(os.listdir(test)):
        if not os.path.isdir(os.path.join(test, sub)):
            continue
        for f in sorted(os.listdir(os.path.join(test, sub))):
            if not f.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            with open(os.path.join(test, sub, f), "rb") as fh:
                add(os.path.splitext(f)[0], fh.read())
    wheel = os.path.join(repo, ".qcyn", "downloads", WHEEL)
    if os.path.exists(wheel):
        with zipfile.ZipFile(wheel) as z:
            for f in SKIMAGE:
                add(os.path.splitext(f)[0], z.read("skimage/data/" + f))
    return out


def copies(img):
    """The six kinds of copy, as (name, image, format, save options)."""
    w, h = img.size
    cw, ch = round(w * 0.9), round(h * 0.9)
    left, top = (w - cw) // 2, (h - ch) // 2
    jitter = ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.15))
                                .enhance(0.85)).enhance(1.25)
    return [
        ("flip", ImageOps.mirror(img), "PNG", {}),
        ("crop90", img.crop((left, top, left + cw, top + ch)), "PNG", {}),
        ("jpeg70", img, "JPEG", {"quality": 70}),
        ("resize50", img.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS), "PNG", {}),
        ("rot5", img.rotate(5, resample=Image.BILINEAR, fillcolor=(0, 0, 0)), "PNG", {}),
        ("jitter", jitter, "PNG", {}),
    ]


def save(img, path, fmt, opts):
    img.save(path, fmt, **opts)


if __name__ == "__main__":
    repo, out = sys.argv[1], sys.argv[2]
    for name, img in photos(repo):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        save(img, os.path.join(d, "orig.png"), "PNG", {})
        for kind, copy, fmt, opts in copies(img):
            save(copy, os.path.join(d, kind + (".jpg" if fmt == "JPEG" else ".png")), fmt, opts)
    print(f"dups_make: {len(os.listdir(out))} photos x 7 files in {out}", file=sys.stderr)

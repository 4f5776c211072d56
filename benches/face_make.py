#!/usr/bin/env python3
"""Large "web photos" for the face benchmarks, made from the registry photos of
scripts/fetch_test_images (.qcyn/testdata/faces): nothing from outside the project.

    .qcyn/venv/bin/python benches/face_make.py OUT [--count 60] [--seed 0]

Writes OUT/<person>/<k>.jpg (JPEG quality 90), one folder per main person (obama, biden,
astronaut). Each photo is 1,600 to 3,000 pixels on its longer side, landscape or portrait, on a
smooth background with grain, and is one of:
  - a portrait (60%): one photo of the person, filling most of the height;
  - a collage (20%): two to four shots of the same person in a grid;
  - a group (20%): the person with one or two others, side by side, at different sizes.
Prints one JSON line: {"images", "out"}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parent.parent
PEOPLE = {
    "obama": ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg"],
    "biden": ["biden.jpg"],
    "astronaut": ["astronaut.png"],
}
SIZES = [(3000, 2000), (2000, 3000), (2400, 1800), (1800, 2400), (1600, 1600), (2800, 2100)]


def background(w: int, h: int, rng: np.random.Generator) -> Image.Image:
    c0, c1 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, 1, 3)).astype(np.float32)
    img = np.broadcast_to(img, (h, w, 3)) + rng.normal(0, 4, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def fit(img: Image.Image, w: int, h: int) -> Image.Image:
    s = min(w / img.width, h / img.height)
    return img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))), Image.BILINEAR)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", type=Path, default=REPO / ".qcyn" / "testdata" / "faces")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    pick = random.Random(a.seed)
    photos = {}
    for person, names in PEOPLE.items():
        photos[person] = []
        for n in names:
            p = a.photos / n
            if not p.is_file():
                print(f"face_make: {p} is missing; run scripts/fetch_test_images", file=sys.stderr)
                return 2
            photos[person].append(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
    people = list(PEOPLE)
    for k in range(a.count):
        person = people[k % len(people)]
        w, h = SIZES[pick.randrange(len(SIZES))]
        canvas = background(w, h, rng)
        kind = pick.random()
        if kind < 0.6:
            shot = fit(pick.choice(photos[person]), int(w * 0.9), int(h * pick.uniform(0.6, 0.95)))
            canvas.paste(shot, ((w - shot.width) // 2, (h - shot.height) // 2))
        elif kind < 0.8:
            n = pick.choice([2, 3, 4])
            cols = 2 if n > 2 else 2
            rows = (n + cols - 1) // cols
            cw, ch = w // cols, h // rows
            for i in range(n):
                shot = pick.choice(photos[person])
                if pick.random() < 0.5:
                    shot = ImageOps.mirror(shot)
                shot = fit(shot, cw - 20, ch - 20)
                canvas.paste(shot, ((i % cols) * cw + 10, (i // cols) * ch + 10))
        else:
            others = [p for p in people if p != person]
            group = [person] + pick.sample(others, pick.choice([1, 2]))
            pick.shuffle(group)
            cw = w // len(group)
            for i, who in enumerate(group):
                shot = fit(pick.choice(photos[who]), cw - 20, int(h * pick.uniform(0.5, 0.9)))
                canvas.paste(shot, (i * cw + 10, h - shot.height))
        dest = a.out / person / f"{k:03d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        canvas.save(dest, quality=90)
    print(json.dumps({"images": a.count, "out": str(a.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

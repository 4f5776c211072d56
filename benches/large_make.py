#!/usr/bin/env python3
"""Makes a set of large photos for the extract benchmarks: the first PER_CLASS photos of each class
folder of SRC, enlarged (bicubic) so that their longer side is one of 1280, 1600, 2048 or 2400
pixels (seeded choice), saved as JPEG quality 90 under OUT/<class>/.

  .qcyn/venv/bin/python benches/large_make.py SRC OUT [PER_CLASS]
  e.g. benches/large_make.py ../shared/data/hymenoptera /tmp/large 60
"""

import os
import random
import sys

from PIL import Image

src, out = sys.argv[1], sys.argv[2]
per_class = int(sys.argv[3]) if len(sys.argv) > 3 else 60
rng = random.Random(0)
made = 0
for cls in sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))):
    os.makedirs(os.path.join(out, cls), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(src, cls)))[:per_class]:
        img = Image.open(os.path.join(src, cls, name)).convert("RGB")
        side = rng.choice([1280, 1600, 2048, 2400])
        w, h = img.size
        s = side / max(w, h)
        img = img.resize((round(w * s), round(h * s)), Image.BICUBIC)
        img.save(os.path.join(out, cls, os.path.splitext(name)[0] + ".jpg"), quality=90)
        made += 1
print(f"{made} photos in {out}", file=sys.stderr)

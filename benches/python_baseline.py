#!/usr/bin/env python3
"""The Python pipeline that qcyn is compared against (PIL + numpy + onnxruntime 1.32).

Run it with the project's venv:  .qcyn/venv/bin/python benches/python_baseline.py MODE ...

  extract DIR --model-file F [--batch 32] [--threads 2] [--manifest models/X.toml] [--draft] [--limit K]
      Walk DIR (one folder per class, image files inside), and for every image: PIL decode, convert
      RGB, resize the shorter side to 256 (bilinear, antialiased: what torchvision's Resize does on
      PIL images), centre crop 224, scale to 0..1, normalise with ImageNet mean/std, NCHW float32;
      run the model with onnxruntime at --batch. Prints one JSON object to stdout:
      {"images", "seconds", "images_per_s", ...}. `seconds` is wall time for everything
      (listing, decoding, preprocessing, inference). --manifest takes size, resize, filter,
      mean/std and tensor names from a qcyn manifest instead of the MobileNetV2 defaults.
      --draft lets PIL decode JPEGs at 1/2, 1/4 or 1/8 scale when that still covers the target
      (the DCT-domain trick; off by default, so the default is the plain pipeline).

  backbone --model-file F [--size 224] [--batch 1,8,32] [--threads 2] [--iters 20] [--warmup 3]
      Random input; per batch size: warm-up runs, then --iters timed runs. Prints JSON with
      p50/p95 latency (ms per batch) and images/s (batch / mean latency) per batch size.

Progress and notes go to stderr; stdout is only the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "lanczos": Image.LANCZOS}


def log(msg: str) -> None:
    print(f"python_baseline: {msg}", file=sys.stderr, flush=True)


def make_session(model_file: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_file, so, providers=["CPUExecutionProvider"])


def list_images(root: Path) -> list[Path]:
    files = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cls.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                files.append(f)
    return files


class Preprocess:
    def __init__(self, size=224, resize_to=256, filter_="bilinear", mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), scale=255.0, draft=False):
        self.size, self.resize_to, self.filter = size, resize_to, FILTERS[filter_]
        self.mul = (1.0 / (scale * np.asarray(std, np.float32))).astype(np.float32)
        self.add = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
        self.draft = draft

    def __call__(self, path: Path) -> np.ndarray:
        with Image.open(path) as im:
            if self.draft and im.format == "JPEG":
                w, h = im.size
                f = self.resize_to / min(w, h)
                im.draft("RGB", (math.ceil(w * f), math.ceil(h * f)))
            im = im.convert("RGB")
            # torchvision Resize(int): shorter side -> resize_to, longer side truncated
            w, h = im.size
            if w <= h:
                nw, nh = self.resize_to, int(self.resize_to * h / w)
            else:
                nw, nh = int(self.resize_to * w / h), self.resize_to
            im = im.resize((nw, nh), self.filter)
            # torchvision CenterCrop
            top = int(round((nh - self.size) / 2.0))
            left = int(round((nw - self.size) / 2.0))
            im = im.crop((left, top, left + self.size, top + self.size))
            a = np.asarray(im, dtype=np.float32)  # H W C, 0..255
        a = a * self.mul + self.add
        return a.transpose(2, 0, 1)


def cmd_extract(args) -> dict:
    t0 = time.perf_counter()
    pre_kwargs, in_name, out_name = {}, None, None
    if args.manifest:
        m = tomllib.loads(Path(args.manifest).read_text())
        p = m["preprocess"]
        pre_kwargs = dict(size=m["input"]["height"], resize_to=p["resize_to"], filter_=p["filter"],
                          mean=p["mean"], std=p["std"], scale=p["scale"])
        in_name, out_name = m["input"]["name"], m["output"]["features"]
    pre = Preprocess(draft=args.draft, **pre_kwargs)
    sess = make_session(args.model_file, args.threads)
    in_name = in_name or sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    out_name = out_name or ("features" if "features" in outs else outs[0])

    files = list_images(Path(args.dir))
    if args.limit:
        files = files[: args.limit]
    n_ok, errors, t_pre, t_inf, dim = 0, 0, 0.0, 0.0, None
    batch: list[np.ndarray] = []

    def flush():
        nonlocal t_inf, dim, n_ok
        t = time.perf_counter()
        (y,) = sess.run([out_name], {in_name: np.stack(batch)})
        t_inf += time.perf_counter() - t
        dim = y.shape[1]
        n_ok += len(batch)
        batch.clear()

    for i, f in enumerate(files):
        t = time.perf_counter()
        try:
            batch.append(pre(f))
        except Exception as e:  # unreadable image: reported and skipped
            errors += 1
            log(f"skipping {f}: {e}")
        t_pre += time.perf_counter() - t
        if len(batch) == args.batch:
            flush()
        if (i + 1) % 100 == 0:
            log(f"{i + 1}/{len(files)} images")
    if batch:
        flush()
    seconds = time.perf_counter() - t0
    return {
        "mode": "extract", "model_file": args.model_file, "dir": args.dir, "batch": args.batch,
        "threads": args.threads, "draft": args.draft, "feature_dim": dim,
        "images": n_ok, "errors": errors, "seconds": round(seconds, 4),
        "images_per_s": round(n_ok / seconds, 3) if seconds > 0 else None,
        "preprocess_seconds": round(t_pre, 4), "inference_seconds": round(t_inf, 4),
        "onnxruntime": ort.__version__,
    }


def cmd_backbone(args) -> dict:
    sess = make_session(args.model_file, args.threads)
    in_name = sess.get_inputs()[0].name
    outs = [o.name for o in sess.get_outputs()]
    out_name = "features" if "features" in outs else outs[0]
    rng = np.random.default_rng(0)
    results = []
    for b in [int(x) for x in args.batch.split(",")]:
        x = rng.standard_normal((b, 3, args.size, args.size), dtype=np.float32)
        for _ in range(args.warmup):
            sess.run([out_name], {in_name: x})
        lat = []
        for _ in range(args.iters):
            t = time.perf_counter()
            sess.run([out_name], {in_name: x})
            lat.append(time.perf_counter() - t)
        lat_ms = np.array(lat) * 1000.0
        r = {
            "batch": b, "iters": args.iters,
            "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p95_ms": round(float(np.percentile(lat_ms, 95)), 3),
            "mean_ms": round(float(lat_ms.mean()), 3),
            "images_per_s": round(b / (lat_ms.mean() / 1000.0), 3),
        }
        log(f"batch {b}: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, {r['images_per_s']} images/s")
        results.append(r)
    return {
        "mode": "backbone", "model_file": args.model_file, "size": args.size, "threads": args.threads,
        "output": out_name, "onnxruntime": ort.__version__, "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("extract", help="decode + preprocess + backbone over a folder-per-class tree")
    e.add_argument("dir")
    e.add_argument("--model-file", required=True)
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--manifest", help="take preprocessing and tensor names from this qcyn manifest")
    e.add_argument("--draft", action="store_true", help="let PIL decode JPEGs at reduced scale (DCT scaling)")
    e.add_argument("--limit", type=int, default=0, help="only the first K images")
    b = sub.add_parser("backbone", help="latency and throughput of the model alone, random input")
    b.add_argument("--model-file", required=True)
    b.add_argument("--size", type=int, default=224)
    b.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--iters", type=int, default=20)
    b.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if not os.path.isfile(args.model_file):
        ap.error(f"no such model file: {args.model_file} (run scripts/setup)")
    out = cmd_extract(args) if args.mode == "extract" else cmd_backbone(args)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

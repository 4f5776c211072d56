#!/usr/bin/env python3
"""The Python face pipeline that qcyn's face mode is compared against: YuNet + SFace in
onnxruntime, numpy and PIL (OpenCV is not installed here; this does what OpenCV's
FaceDetectorYN + FaceRecognizerSF do, with the same two graphs qcyn runs).

    .qcyn/venv/bin/python benches/face_python.py DIR [--threads 2] [--models models]

For every image under DIR (recursively): PIL decode with the EXIF orientation applied, RGB; YuNet
at the photo's own aspect ratio (the longer side resized to 640, bilinear with PIL's reducing
gap, padded to multiples of 32, BGR 0..255); decode the three strides (score sqrt(cls*obj) >= 0.6),
NMS at IoU 0.3, boxes back to the photo; every face aligned with the least-squares similarity of
its five landmarks onto SFace's template (PIL affine warp, bilinear) and embedded by SFace, one
face per run (as FaceRecognizerSF::feature does), L2-normalised. Prints one JSON line:
{"images", "faces", "seconds", "images_per_s"}; `seconds` is wall time for all of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm"}


def letterbox(img: Image.Image, size: int = 640, upscale_to: int = 320):
    w, h = img.size
    s = min(size / w, size / h, max(upscale_to / max(w, h), 1.0))
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0) if (nw, nh) != (w, h) else img
    iw, ih = -(-nw // 32) * 32, -(-nh // 32) * 32
    x = np.zeros((1, 3, ih, iw), np.float32)
    a = np.asarray(small, dtype=np.float32)
    x[0, :, :nh, :nw] = a[:, :, ::-1].transpose(2, 0, 1)  # BGR
    return x, nw / w, nh / h, nw, nh


def decode(outs: dict, iw: int, ih: int, threshold: float = 0.6):
    boxes, scores, kps = [], [], []
    for s in (8, 16, 32):
        gw, gh = iw // s, ih // s
        cls, obj = outs[f"cls_{s}"].reshape(-1), outs[f"obj_{s}"].reshape(-1)
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.nonzero(score >= threshold)[0]
        if keep.size == 0:
            continue
        row, col = (keep // gw).astype(np.float32), (keep % gw).astype(np.float32)
        b = outs[f"bbox_{s}"].reshape(-1, 4)[keep]
        k = outs[f"kps_{s}"].reshape(-1, 10)[keep]
        cx, cy = (col + b[:, 0]) * s, (row + b[:, 1]) * s
        bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
        boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1))
        scores.append(score[keep])
        lm = np.empty((keep.size, 5, 2), np.float32)
        lm[:, :, 0] = (col[:, None] + k[:, 0::2]) * s
        lm[:, :, 1] = (row[:, None] + k[:, 1::2]) * s
        kps.append(lm)
        del gh
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


def nms(boxes, scores, iou=0.3):
    order = np.argsort(-scores)
    kept = []
    for i in order:
        ok = True
        for j in kept:
            a, b = boxes[i], boxes[j]
            ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
            iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
            inter = ix * iy
            union = a[2] * a[3] + b[2] * b[3] - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity src -> dst as a 2x3 matrix [[a, -b, tx], [b, a, ty]]."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    den = (s ** 2).sum()
    a = (s * d).sum() / den
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / den
    tx = md[0] - (a * ms[0] - b * ms[1])
    ty = md[1] - (b * ms[0] + a * ms[1])
    return np.array([[a, -b, tx], [b, a, ty]])


def align(img: Image.Image, landmarks: np.ndarray) -> Image.Image:
    m = similarity(landmarks.astype(np.float64), TEMPLATE)
    # PIL wants crop -> image: the inverse
    a, b, tx, ty = m[0, 0], m[1, 0], m[0, 2], m[1, 2]
    det = a * a + b * b
    ia, ib = a / det, -b / det
    itx, ity = -(ia * tx - ib * ty), -(ib * tx + ia * ty)
    return img.transform((112, 112), Image.AFFINE, (ia, -ib, itx, ib, ia, ity), resample=Image.BILINEAR)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    a = ap.parse_args()
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    det = ort.InferenceSession(str(a.models / "onnx" / "yunet.onnx"), so, providers=["CPUExecutionProvider"])
    rec = ort.InferenceSession(str(a.models / "onnx" / "sface.onnx"), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in det.get_outputs()]
    paths = sorted(p for p in a.dir.rglob("*") if p.suffix.lower() in EXTS)
    n_faces = 0
    for p in paths:
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        x, sx, sy, nw, nh = letterbox(img)
        outs = dict(zip(names, det.run(names, {"input": x})))
        boxes, scores, kps = decode(outs, x.shape[3], x.shape[2])
        centre_in = (boxes[:, 0] + boxes[:, 2] / 2 < nw) & (boxes[:, 1] + boxes[:, 3] / 2 < nh)
        boxes, scores, kps = boxes[centre_in], scores[centre_in], kps[centre_in]
        for i in nms(boxes, scores):
            lm = kps[i] / np.array([sx, sy], np.float32)
            crop = np.asarray(align(img, lm), dtype=np.float32).transpose(2, 0, 1)[None]
            v = rec.run(None, {"data": np.ascontiguousarray(crop)})[0][0]
            v /= max(np.linalg.norm(v), 1e-12)
            n_faces += 1
    secs = time.perf_counter() - t0
    print(json.dumps({"images": len(paths), "faces": n_faces, "seconds": round(secs, 3),
                      "images_per_s": round(len(paths) / secs, 2) if secs > 0 else 0.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

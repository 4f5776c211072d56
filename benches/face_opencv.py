#!/usr/bin/env python3
"""The plain OpenCV face pipeline of issue 8, the one a user would write: OpenCV's YuNet
(`cv2.FaceDetectorYN`) at the photo's own aspect ratio (longer side 640), every face aligned by
`cv2.FaceRecognizerSF.alignCrop` and embedded by the same SFace graph in onnxruntime, one face per
run, L2-normalised. OpenCV is not a qcyn dependency: install the wheel for this benchmark only,
e.g. `pip install --target /tmp/cv opencv-python-headless` and run with `PYTHONPATH=/tmp/cv`.

    .qcyn/venv/bin/python benches/face_opencv.py DIR [--threads 2] [--models models]

Prints one JSON line: {"images", "faces", "seconds", "images_per_s"} (wall time for all of it).
"""
import argparse, json, sys, time
from pathlib import Path

try:
    import cv2
except ImportError:
    sys.exit("face_opencv.py: OpenCV is missing: pip install --target /tmp/cv opencv-python-headless, then PYTHONPATH=/tmp/cv")
import numpy as np
import onnxruntime as ort

EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=str(Path(__file__).resolve().parent.parent / "models"))
    a = ap.parse_args()
    cv2.setNumThreads(a.threads)
    onnx = Path(a.models) / "onnx"
    start = time.perf_counter()
    det = cv2.FaceDetectorYN.create(str(onnx / "yunet.onnx"), "", (320, 320), 0.6, 0.3)
    rec = cv2.FaceRecognizerSF.create(str(onnx / "sface.onnx"), "")
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    sface = ort.InferenceSession(str(onnx / "sface.onnx"), so, providers=["CPUExecutionProvider"])
    name = sface.get_inputs()[0].name
    files = sorted(p for p in Path(a.dir).rglob("*") if p.suffix.lower() in EXTS)
    faces = 0
    for p in files:
        img = cv2.imread(str(p))  # applies the EXIF orientation
        if img is None:
            continue
        h, w = img.shape[:2]
        s = 640 / max(h, w)
        small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s)))) if s < 1 else img
        det.setInputSize((small.shape[1], small.shape[0]))
        _, found = det.detect(small)
        if found is None:
            continue
        for f in found:
            f = f.copy()
            if s < 1:
                f[:14] /= s
            crop = rec.alignCrop(img, f)
            x = crop.astype(np.float32).transpose(2, 0, 1)[None]  # BGR, as FaceRecognizerSF feeds it
            (e,) = sface.run(None, {name: x})
            e = e / np.linalg.norm(e)
            faces += 1
    secs = time.perf_counter() - start
    print(json.dumps({"images": len(files), "faces": faces, "seconds": round(secs, 3),
                      "images_per_s": round(len(files) / secs, 2)}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Static int8 quantisation of a whole-image backbone (QDQ, per channel), for build_models.py.

The fp32 graph models/onnx/<name>.onnx (already checked against its manifest's sha256) is
quantised with onnxruntime.quantization.quantize_static:
- QDQ format, weights int8 per output channel, activations uint8 (asymmetric; ONNX Runtime's
  recommended CPU setting for x86 with or without VNNI), MinMax calibration;
- calibrated on photos that a pinned registry package ships (the scikit-image wheel's
  skimage/data, never the user's data), each preprocessed exactly as the manifest says, plus its
  mirror image;
- checked against fp32: the cosine between the fp32 and int8 feature vectors on the calibration
  photos and on other photos of the same wheel that calibration never saw. The build fails below
  the manifest's `int8.min_cosine`.

Reproducibility: the calibration ranges come from ONNX Runtime running the fp32 graph, whose last
bits can differ between CPUs (AVX2 / AVX-512 kernels); each range is therefore rounded outwards
to 3 significant digits before quantising, so that the int8 graph is byte-identical across
machines and its sha256 can be pinned in the manifest like the fp32 one (a range that sits right
on a rounding boundary could still differ; the pinned sha256 then fails the build loudly rather
than installing an unverified graph).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

# scikit-image 0.24.0's wheel (pinned in scripts/setup): colour and grey photos of its data folder.
SKIMAGE_WHEEL = "scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
SKIMAGE_SHA256 = "fa27b3a0dbad807b966b8db2d78da734cb812ca4787f7fbb143764800ce2fa9c"
CALIBRATION = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
               "hubble_deep_field.jpg", "brick.png", "grass.png", "ihc.png", "retina.jpg", "logo.png",
               "camera.png", "coins.png", "color.png"]
HELD_OUT = ["motorcycle_right.png", "gravel.png", "moon.png", "page.png", "text.png", "cell.png",
            "clock_motion.png", "horse.png"]
RANGE_DIGITS = 3


def log(msg: str) -> None:
    print(f"build_models: {msg}", file=sys.stderr, flush=True)


def skimage_photos(downloads: Path, names: list[str], sha256_file) -> list[Image.Image]:
    wheel = downloads / SKIMAGE_WHEEL
    if not wheel.is_file():
        raise SystemExit(f"build_models: {wheel} is missing (int8 calibration photos); run scripts/setup first")
    got = sha256_file(wheel)
    if got != SKIMAGE_SHA256:
        raise SystemExit(f"build_models: sha256 mismatch for {wheel}: {got} != {SKIMAGE_SHA256}; "
                         "delete it and run scripts/setup again")
    with zipfile.ZipFile(wheel) as z:
        return [Image.open(io.BytesIO(z.read(f"skimage/data/{n}"))).convert("RGB") for n in names]


def preprocess(img: Image.Image, manifest: dict) -> np.ndarray:
    """The manifest's preprocessing, as src/preprocess.rs does it (PIL's antialiased filters)."""
    pre, inp = manifest["preprocess"], manifest["input"]
    h, w = inp["height"], inp["width"]
    filt = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos3": Image.LANCZOS}[pre["filter"]]
    if pre["resize"] == "shorter_then_center_crop":
        r = pre["resize_to"]
        iw, ih = img.size
        s = r / min(iw, ih)
        nw, nh = max(r, round(iw * s)), max(r, round(ih * s))
        img = img.resize((nw, nh), filt)
        left, top = (nw - w) // 2, (nh - h) // 2
        img = img.crop((left, top, left + w, top + h))
    else:
        img = img.resize((w, h), filt)
    x = np.asarray(img, dtype=np.float32)
    if pre["colour"] == "bgr":
        x = x[:, :, ::-1]
    x = (x / pre["scale"] - np.array(pre["mean"], np.float32)) / np.array(pre["std"], np.float32)
    x = x.transpose(2, 0, 1) if inp["layout"] == "nchw" else x
    return np.ascontiguousarray(x[None], dtype=np.float32)


def round_out(v: np.ndarray, up: bool) -> np.ndarray:
    """Rounds every value outwards (away from the inside of the range) to RANGE_DIGITS digits."""
    out = np.empty_like(v)
    for i, x in np.ndenumerate(v):
        x = float(x)
        if x == 0.0 or not math.isfinite(x):
            out[i] = x
            continue
        e = math.floor(math.log10(abs(x))) - (RANGE_DIGITS - 1)
        q = x / 10.0**e
        q = math.ceil(q - 1e-9) if up else math.floor(q + 1e-9)
        out[i] = float(f"{q}e{e}")
    return out


class Reader:
    """CalibrationDataReader over prepared tensors."""

    def __init__(self, name: str, tensors: list[np.ndarray]):
        self.name, self.tensors, self.i = name, tensors, 0

    def get_next(self):
        if self.i >= len(self.tensors):
            return None
        self.i += 1
        return {self.name: self.tensors[self.i - 1]}

    def rewind(self):
        self.i = 0


def features(session, manifest: dict, tensors: list[np.ndarray]) -> np.ndarray:
    name, out = manifest["input"]["name"], manifest["output"]["features"]
    return np.concatenate([session.run([out], {name: t})[0] for t in tensors])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def quantize(manifest: dict, fp32_path: Path, downloads: Path, sha256_file) -> tuple[bytes, dict]:
    """The int8 graph (deterministically serialised) and a report of its check against fp32."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    spec = manifest["int8"]
    photos = skimage_photos(downloads, CALIBRATION, sha256_file)
    held = skimage_photos(downloads, HELD_OUT, sha256_file)
    calib = [preprocess(p, manifest) for p in photos] + [
        preprocess(p.transpose(Image.FLIP_LEFT_RIGHT), manifest) for p in photos]
    other = [preprocess(p, manifest) for p in held]
    reader = Reader(manifest["input"]["name"], calib)
    exclude = spec.get("exclude_nodes", [])
    with tempfile.TemporaryDirectory(prefix="qcyn-int8-") as tmp:
        tmp = Path(tmp)
        cache, out = tmp / "ranges.json", tmp / "int8.onnx"
        kwargs = dict(quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                      activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                      calibrate_method=CalibrationMethod[spec.get("calibration", "MinMax")],
                      nodes_to_exclude=exclude, op_types_to_quantize=spec.get("op_types"),
                      calibration_cache_path=str(cache), extra_options=spec.get("extra_options", {}))
        # 1. calibrate (writes the ranges), 2. round the ranges, 3. quantise from the rounded ones
        with contextlib.redirect_stdout(sys.stderr):  # its progress lines are not data
            quantize_static(str(fp32_path), str(tmp / "unrounded.onnx"), reader, **kwargs)
        ranges = json.loads(cache.read_text())
        for entry in ranges["data"].values():
            for key, up in (("lowest", False), ("highest", True)):
                v = entry[key]
                arr = np.array(v["data"], dtype=v["dtype"]) if isinstance(v, dict) else np.array(v, np.float32)
                r = round_out(arr.astype(np.float32), up)
                entry[key] = {"CLS": "numpy.array", "data": r.tolist(), "dtype": "float32"}
        cache.write_text(json.dumps(ranges, sort_keys=True))
        quantize_static(str(fp32_path), str(out), None, **kwargs)
        model = onnx.load(str(out))
    model.doc_string = (f"{manifest['name']} int8: onnxruntime.quantization.quantize_static QDQ, per-channel int8 "
                        f"weights, uint8 activations, MinMax on {len(calib)} scikit-image photos (ranges rounded "
                        f"to {RANGE_DIGITS} digits)")
    data = model.SerializeToString(deterministic=True)

    so = ort.SessionOptions()
    s32 = ort.InferenceSession(str(fp32_path), so, providers=["CPUExecutionProvider"])
    s8 = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    c_cal = cosines(features(s32, manifest, calib), features(s8, manifest, calib))
    c_oth = cosines(features(s32, manifest, other), features(s8, manifest, other))
    report = {"calibration_min": float(c_cal.min()), "calibration_mean": float(c_cal.mean()),
              "held_out_min": float(c_oth.min()), "held_out_mean": float(c_oth.mean()),
              "calibration_images": len(calib), "held_out_images": len(other)}
    return data, report


def check(name: str, report: dict, min_cosine: float) -> bool:
    log(f"{name} int8: feature cosine with fp32 on {report['calibration_images']} calibration images "
        f"min {report['calibration_min']:.4f} mean {report['calibration_mean']:.4f}; on "
        f"{report['held_out_images']} held-out images min {report['held_out_min']:.4f} mean "
        f"{report['held_out_mean']:.4f} (threshold {min_cosine})")
    ok = min(report["calibration_min"], report["held_out_min"]) >= min_cosine
    if not ok:
        log(f"{name} int8: feature cosine below {min_cosine}: the int8 graph is not close enough to fp32; "
            "not installed")
    return ok


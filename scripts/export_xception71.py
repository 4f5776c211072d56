#!/usr/bin/env python3
"""Export the real pretrained Xception71 (timm `xception71.tf_in1k`) to ONNX. Needs internet.

    pip install torch timm onnx onnxruntime
    python scripts/export_xception71.py [--model xception71.tf_in1k] [--no-manifest]
    python scripts/export_xception71.py --self-test DIR     # offline, no torch or timm

Writes models/onnx/xception71.onnx with the same interface as the offline random-weight graph
(scripts/build_models.py):

    input     float32 [N, 3, 299, 299]   (N dynamic), RGB, (pixel/255 - 0.5) / 0.5
    features  float32 [N, 2048]          global average pool of the last feature map
    logits    float32 [N, 1000]          ImageNet-1k logits

then checks it against PyTorch with ONNX Runtime (if installed) and rewrites models/xception71.toml
in place: `file`, `sha256`, `random_weights = false`, description, preprocessing from timm's
pretrained config, and [source]. Review with `git diff models/xception71.toml`.
The offline build (scripts/setup) then leaves the random graph alone, since the manifest no longer
describes it; `git checkout models/xception71.toml` goes back to the random one.

--self-test DIR runs everything after the download, offline, on a tiny stand-in for timm's model
(global average pooling and two matrix products, written with the `onnx` package instead of
exported by torch, with timm's data config of xception71.tf_in1k): the ONNX Runtime check, the
interface check against the manifest, the sha256 and the rewrite of a copy of
models/xception71.toml, written to DIR/xception71.toml and DIR/onnx/xception71.onnx (the test
suite then checks that qcyn reads it and makes it the default). So the parts that do not need the
network cannot rot unseen.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# timm.data.resolve_data_config for xception71.tf_in1k (timm 1.0): what the self-test stands in with
TF_IN1K_CONFIG = {"input_size": (3, 299, 299), "interpolation": "bicubic", "mean": (0.5, 0.5, 0.5),
                  "std": (0.5, 0.5, 0.5), "crop_pct": 0.903, "crop_mode": "center"}
MANIFEST = REPO / "models" / "xception71.toml"
OUT_REL = "onnx/xception71.onnx"


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rewrite_manifest(text: str, *, sha: str, model_name: str, timm_version: str, torch_version: str,
                     resize_to: int, filter_: str, mean, std, size: int) -> str:
    """Point the xception71 manifest at the exported pretrained file."""

    def set_key(t: str, key: str, value: str, section: str | None = None) -> str:
        # replace `key = ...` (keeping any trailing comment) in the given [section] (None: top level)
        lines = t.split("\n")
        current, done = None, False
        for i, line in enumerate(lines):
            m = re.match(r"\s*\[([^\]]+)\]\s*$", line)
            if m:
                current = m.group(1)
                continue
            if current == section and re.match(rf"\s*{re.escape(key)}\s*=", line):
                cm = re.search(r"\s+#[^\"]*$", line.split("=", 1)[1])  # a trailing comment
                comment = cm.group(0) if cm else ""
                lines[i] = f"{key} = {value}{comment}"
                done = True
                break
        if not done:
            raise SystemExit(f"export_xception71: key {key!r} not found in [{section or 'top level'}] of {MANIFEST}")
        return "\n".join(lines)

    def fmt_list(xs) -> str:
        return "[" + ", ".join(repr(float(x)) for x in xs) + "]"

    t = text
    t = set_key(t, "description", f'"Xception71 ({model_name}, pretrained, exported by scripts/export_xception71.py), 2048-D pooled features"')
    t = set_key(t, "file", f'"{OUT_REL}"')
    t = set_key(t, "sha256", f'"{sha}"')
    t = set_key(t, "random_weights", "false")
    t = set_key(t, "licence", '"Apache-2.0 (timm; weights ported from TensorFlow DeepLab)"')
    t = set_key(t, "height", str(size), "input")
    t = set_key(t, "width", str(size), "input")
    t = set_key(t, "resize_to", str(resize_to), "preprocess")
    t = set_key(t, "filter", f'"{filter_}"', "preprocess")
    t = set_key(t, "mean", fmt_list(mean), "preprocess")
    t = set_key(t, "std", fmt_list(std), "preprocess")
    head, sep, _ = t.partition("\n[source]")
    if not sep:
        raise SystemExit(f"export_xception71: no [source] section in {MANIFEST}")
    t = head + (
        "\n[source]\n"
        "generated = true\n"
        'generator = "scripts/export_xception71.py"\n'
        f'timm_model = "{model_name}"\n'
        f'timm_version = "{timm_version}"\n'
        f'torch_version = "{torch_version}"\n'
    )
    # the header comment talks about random weights: say what this file is now
    t = re.sub(
        r"^# THIS FILE DESCRIBES A GRAPH WITH RANDOM WEIGHTS, FOR LATENCY BENCHMARKS ONLY\.$",
        "# EXPORTED PRETRAINED WEIGHTS (scripts/export_xception71.py). `git checkout` this file to go back\n"
        "# to the offline random-weight graph described below.",
        t, flags=re.M,
    )
    return t


try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def resize_for(cfg: dict) -> tuple[int, int]:
    """(crop size, shorter side before the crop) from a timm data config."""
    size = int(cfg["input_size"][-1])
    return size, int(math.floor(size / cfg["crop_pct"]))


def check_with_ort(path: Path, forward, size: int) -> None:
    """The exported graph must agree with the model it came from (`forward`: numpy NCHW ->
    (features, logits)) on random batches of 1 and 3."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("export_xception71: onnxruntime not installed; skipped the ONNX Runtime check", file=sys.stderr)
        return
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        tf, tl = forward(x)
        of, ol = sess.run(["features", "logits"], {"input": x})
        err = max(np.abs(of - tf).max(), np.abs(ol - tl).max())
        print(f"export_xception71: batch {n}: max abs error ONNX Runtime vs the original {err:.2e}", file=sys.stderr)
        if err > 1e-3:
            raise SystemExit("export_xception71: the exported graph disagrees with the original model")


def check_interface(path: Path, manifest_text: str) -> None:
    """The graph has the input and outputs that the (rewritten) manifest names, with its shapes."""
    import onnx

    m = tomllib.loads(manifest_text)
    g = onnx.load(str(path), load_external_data=False).graph
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    inputs = {i.name: dims(i) for i in g.input}
    outputs = {o.name: dims(o) for o in g.output}
    want_in = m["input"]["name"]
    problems = []
    if want_in not in inputs or inputs[want_in][1:] != [3, m["input"]["height"], m["input"]["width"]]:
        problems.append(f"input {want_in} [N, 3, {m['input']['height']}, {m['input']['width']}] (graph: {inputs})")
    feats = m["output"]["features"]
    if feats not in outputs or outputs[feats][1:] != [m["output"]["dim"]]:
        problems.append(f"output {feats} [N, {m['output']['dim']}] (graph: {outputs})")
    if m["output"].get("logits") and m["output"]["logits"] not in outputs:
        problems.append(f"output {m['output']['logits']} (graph: {outputs})")
    if problems:
        raise SystemExit("export_xception71: the graph does not match models/xception71.toml: " + "; ".join(problems))


def finish(out: Path, manifest: Path, manifest_text: str, *, model_name: str, timm_version: str,
           torch_version: str, cfg: dict) -> None:
    """sha256, manifest rewrite, and the interface check of the rewritten manifest."""
    size, resize_to = resize_for(cfg)
    sha = sha256_file(out)
    print(f"export_xception71: wrote {out} sha256 {sha}", file=sys.stderr)
    text = rewrite_manifest(
        manifest_text, sha=sha, model_name=model_name, timm_version=timm_version,
        torch_version=torch_version, resize_to=resize_to, filter_=cfg["interpolation"],
        mean=cfg["mean"], std=cfg["std"], size=size,
    )
    check_interface(out, text)
    manifest.write_text(text)
    print(f"export_xception71: updated {manifest} (review with git diff)", file=sys.stderr)


def self_test(dest: Path) -> int:
    """Everything after the download, on a tiny stand-in written with the onnx package."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = TF_IN1K_CONFIG
    size, _ = resize_for(cfg)
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((3, 2048)).astype(np.float32)
    w2 = (rng.standard_normal((2048, 1000)) * 0.01).astype(np.float32)

    def forward(x):
        feats = np.maximum(x.mean(axis=(2, 3)) @ w1, 0)
        return feats, feats @ w2

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["features"]),
        helper.make_node("MatMul", ["features", "w2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "xception71_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 2048]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = dest / OUT_REL
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString(deterministic=True))
    check_with_ort(out, forward, size)
    finish(out, dest / "xception71.toml", MANIFEST.read_text(), model_name="xception71.tf_in1k",
           timm_version="stand-in", torch_version="stand-in", cfg=cfg)
    m = tomllib.loads((dest / "xception71.toml").read_text())
    assert m["random_weights"] is False and m["file"] == OUT_REL, m
    assert m["preprocess"]["resize_to"] == 331 and m["preprocess"]["filter"] == "bicubic", m["preprocess"]
    assert m["source"]["timm_model"] == "xception71.tf_in1k", m["source"]
    print(f"export_xception71: self-test OK ({dest})", file=sys.stderr)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="xception71.tf_in1k", help="timm model name (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / OUT_REL)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-manifest", action="store_true", help="do not rewrite models/xception71.toml")
    ap.add_argument("--self-test", type=Path, metavar="DIR",
                    help="offline: run the export's checks and manifest rewrite on a tiny stand-in, into DIR")
    args = ap.parse_args()
    if args.self_test:
        return self_test(args.self_test)

    try:
        import timm
        import torch
    except ImportError as e:
        raise SystemExit(f"export_xception71: needs torch and timm ({e}); pip install torch timm onnx") from e

    model = timm.create_model(args.model, pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    size, resize_to = resize_for(cfg)
    print(f"export_xception71: timm data config {cfg} -> resize shorter side to {resize_to}, crop {size}", file=sys.stderr)

    class Backbone(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            fmap = self.m.forward_features(x)
            feats = self.m.forward_head(fmap, pre_logits=True)  # [N, 2048] pooled, flattened
            logits = self.m.get_classifier()(feats)
            return feats, logits

    wrapped = Backbone(model).eval()
    dummy = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref_feats, ref_logits = wrapped(dummy)
        full = model(dummy)
    assert ref_feats.shape == (2, 2048), ref_feats.shape
    assert torch.allclose(full, ref_logits, atol=1e-4), "features -> classifier does not reproduce model(x)"

    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_kwargs = dict(
        input_names=["input"], output_names=["features", "logits"],
        dynamic_axes={"input": {0: "N"}, "features": {0: "N"}, "logits": {0: "N"}},
        opset_version=args.opset, do_constant_folding=True,
    )
    with torch.no_grad():
        try:
            torch.onnx.export(wrapped, (dummy,), str(args.out), dynamo=False, **export_kwargs)
        except TypeError:  # torch < 2.5 has no `dynamo` argument
            torch.onnx.export(wrapped, (dummy,), str(args.out), **export_kwargs)

    def forward(x):
        with torch.no_grad():
            f, l = wrapped(torch.from_numpy(x))
        return f.numpy(), l.numpy()

    check_with_ort(args.out, forward, size)
    if args.no_manifest:
        print(f"export_xception71: wrote {args.out} sha256 {sha256_file(args.out)}", file=sys.stderr)
    else:
        finish(args.out, MANIFEST, MANIFEST.read_text(), model_name=args.model, timm_version=timm.__version__,
               torch_version=torch.__version__, cfg=cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())

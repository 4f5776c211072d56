#!/usr/bin/env python3
"""Export the real pretrained Xception71 (timm `xception71.tf_in1k`) to ONNX. Needs internet.

    pip install torch timm onnx onnxruntime
    python scripts/export_xception71.py [--model xception71.tf_in1k] [--no-manifest]

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
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="xception71.tf_in1k", help="timm model name (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=REPO / "models" / OUT_REL)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--no-manifest", action="store_true", help="do not rewrite models/xception71.toml")
    args = ap.parse_args()

    try:
        import timm
        import torch
    except ImportError as e:
        raise SystemExit(f"export_xception71: needs torch and timm ({e}); pip install torch timm onnx") from e

    model = timm.create_model(args.model, pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    resize_to = int(math.floor(size / cfg["crop_pct"]))
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

    try:
        import numpy as np
        import onnxruntime as ort

        sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
        for n in (1, 3):
            x = torch.randn(n, 3, size, size)
            with torch.no_grad():
                tf, tl = wrapped(x)
            of, ol = sess.run(["features", "logits"], {"input": x.numpy()})
            err = max(np.abs(of - tf.numpy()).max(), np.abs(ol - tl.numpy()).max())
            print(f"export_xception71: batch {n}: max abs error ONNX Runtime vs PyTorch {err:.2e}", file=sys.stderr)
            if err > 1e-3:
                raise SystemExit("export_xception71: the exported graph disagrees with PyTorch")
    except ImportError:
        print("export_xception71: onnxruntime not installed; skipped the ONNX Runtime check", file=sys.stderr)

    sha = sha256_file(args.out)
    print(f"export_xception71: wrote {args.out} sha256 {sha}", file=sys.stderr)
    if not args.no_manifest:
        text = rewrite_manifest(
            MANIFEST.read_text(), sha=sha, model_name=args.model, timm_version=timm.__version__,
            torch_version=torch.__version__, resize_to=resize_to, filter_=cfg["interpolation"],
            mean=cfg["mean"], std=cfg["std"], size=size,
        )
        MANIFEST.write_text(text)
        print(f"export_xception71: updated {MANIFEST} (review with git diff)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

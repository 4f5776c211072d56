"""A tiny helper to write inference graphs with ``onnx.helper``, deterministically.

Every name is derived from the order of calls, weights are stored as raw little-endian float32,
and the model carries no timestamps, so the same inputs always give the same file bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17
PRODUCER = "qcyn scripts/build_models.py"


def fold_bn(weight, gamma, beta, mean, var, eps, bias=None):
    """Fold an inference BatchNorm into the preceding conv: returns float32 (weight, bias)."""
    w = np.asarray(weight, np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    b0 = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
    w2 = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    b2 = (b0 - np.asarray(mean, np.float64)) * scale + np.asarray(beta, np.float64)
    return w2.astype(np.float32), b2.astype(np.float32)


class Graph:
    def __init__(self, name: str):
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}
        self._consts: dict[tuple, str] = {}

    def fresh(self, prefix: str) -> str:
        n = self._count.get(prefix, 0)
        self._count[prefix] = n + 1
        return f"{prefix}_{n}"

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value: float) -> str:
        key = ("f32", float(value))
        if key not in self._consts:
            self._consts[key] = self.init(self.fresh("const"), np.array(value, np.float32))
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        out = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh("n_" + op_type), **attrs))
        return out

    def conv(self, x: str, w: np.ndarray, b: np.ndarray | None, stride=1, pad=None, groups=1, prefix="conv") -> str:
        k = w.shape[2]
        p = (k - 1) // 2 if pad is None else pad
        wn = self.init(f"{prefix}.weight", w.astype(np.float32))
        ins = [x, wn]
        if b is not None:
            ins.append(self.init(f"{prefix}.bias", b.astype(np.float32)))
        return self.op(
            "Conv", ins, kernel_shape=[k, w.shape[3]], strides=[stride, stride],
            pads=[p, p, p, p], group=groups, dilations=[1, 1],
        )

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(0.0), self.const(6.0)])

    def model(self, inputs, outputs, doc: str = "") -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, self.name, inputs, outputs, self.inits)
        m = helper.make_model(
            g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER, doc_string=doc,
        )
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m, full_check=True)
        return m


def image_input(name: str, size: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, size, size])


def batch_output(name: str, dim: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", dim])

"""Cut a whole-image backbone graph into a frozen prefix and a trainable tail (issue 10).

A manifest's `[[tail]]` table names the first node of the tail by its weight initializer
(`first_weight`). The cut tensor is that node's input, which must be the only tensor that crosses
the cut. The two graphs written are:

    prefix: <input> [N, 3, H, W] -> Flatten -> `map` [N, C*H'*W']   (the cached feature map)
    tail:   `map` [N, C*H'*W'] -> Reshape [N, C, H', W'] -> the rest -> `features` [N, dim]

The tail holds only the ops qcyn's Rust trainer implements (Conv, Clip, Relu, Add,
GlobalAveragePool, Flatten, Reshape); `qcyn fit --unfreeze N` trains its weights and writes them
back into a copy of this graph. Both graphs are checked here against the whole graph (features
equal to 1e-5 on random inputs) before they are written.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TAIL_OPS = {"Conv", "Clip", "Relu", "Add", "GlobalAveragePool", "Flatten", "Reshape"}


def _graph(nodes, name, inputs, outputs, inits, like: onnx.ModelProto) -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=list(like.opset_import), producer_name=like.producer_name,
                          doc_string=f"{like.doc_string} ({name})")
    m.ir_version = like.ir_version
    onnx.checker.check_model(m, full_check=True)
    return m


def split(full: onnx.ModelProto, spec: dict, features: str) -> tuple[onnx.ModelProto, onnx.ModelProto, list[int]]:
    """(prefix, tail, map shape [C, H, W]) of `full` cut before the node whose weight is
    `spec["first_weight"]`."""
    g = full.graph
    nodes = list(g.node)
    first = [i for i, n in enumerate(nodes) if len(n.input) > 1 and n.input[1] == spec["first_weight"]]
    if len(first) != 1:
        raise SystemExit(f"tails: no single node has the weight `{spec['first_weight']}`")
    k = first[0]
    cut = nodes[k].input[0]
    produced_before = {o for n in nodes[:k] for o in n.output} | {i.name for i in g.input}
    end = next(i for i, n in enumerate(nodes) if features in n.output) + 1
    tail_nodes = nodes[k:end]
    for n in tail_nodes:
        if n.op_type not in TAIL_OPS:
            raise SystemExit(f"tails: the tail holds a {n.op_type} node, which qcyn's trainer does not implement")
        for x in n.input:
            if x in produced_before and x != cut:
                raise SystemExit(f"tails: tensor `{x}` crosses the cut besides `{cut}`; cut at a block boundary")
    inferred = onnx.shape_inference.infer_shapes(full)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    chw = shapes[cut][1:]
    if len(chw) != 3 or min(chw) <= 0:
        raise SystemExit(f"tails: cannot infer the shape of `{cut}` ({shapes.get(cut)})")
    d = int(np.prod(chw))
    inits = {t.name: t for t in g.initializer}

    def used(ns):
        names = {x for n in ns for x in n.input}
        return [inits[x] for x in sorted(names) if x in inits]

    flat = helper.make_node("Flatten", [cut], ["map"], name="n_Flatten_map", axis=1)
    prefix = _graph(nodes[:k] + [flat], f"{g.name}-prefix{spec['blocks']}", list(g.input),
                    [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", d])], used(nodes[:k]), full)
    shape = numpy_helper.from_array(np.array([-1, *chw], np.int64), "map_shape")
    reshape = helper.make_node("Reshape", ["map", "map_shape"], [cut], name="n_Reshape_map")
    out = next(o for o in g.output if o.name == features)
    tail = _graph([reshape] + tail_nodes, f"{g.name}-tail{spec['blocks']}",
                  [helper.make_tensor_value_info("map", TensorProto.FLOAT, ["N", d])], [out],
                  used(tail_nodes) + [shape], full)
    return prefix, tail, chw


def check(full: bytes, prefix: bytes, tail: bytes, input_name: str, size: tuple[int, int], features: str) -> float:
    """Max |features(full) - tail(prefix(x))| on random inputs; raises when above 1e-5."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    run = {k: ort.InferenceSession(b, so, providers=["CPUExecutionProvider"]) for k, b in
           (("full", full), ("prefix", prefix), ("tail", tail))}
    x = np.random.default_rng(0).normal(size=(2, 3, *size)).astype(np.float32)
    want = run["full"].run([features], {input_name: x})[0]
    m = run["prefix"].run(["map"], {input_name: x})[0]
    got = run["tail"].run([features], {"map": m})[0]
    diff = float(np.abs(want - got).max())
    if diff > 1e-5:
        raise SystemExit(f"tails: prefix + tail differ from the whole graph by {diff}")
    return diff

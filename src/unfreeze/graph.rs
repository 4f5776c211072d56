//! The tail ONNX graph as the models script cuts it, read into a [`Tail`] and written back with
//! trained weights: `map [N, C·H·W] → Reshape → (Conv | Clip | Relu)* → GlobalAveragePool →
//! Flatten → features`. Only a chain of those operators is accepted; anything else is named in the
//! error.
use std::collections::HashMap;

use ndarray::{Array1, Array2};

use super::net::{Layer, Tail};
use crate::onnx_proto::{self as pb, Field};

/// A tail graph: its bytes, the layers read from it and the names of each convolution's
/// weight and bias initializers (to write trained values back).
#[derive(Debug, Clone)]
pub struct TailGraph {
    bytes: Vec<u8>,
    /// The layers, with the graph's weights.
    pub tail: Tail,
    /// Per convolution, in [`Tail::params`] order: (initializer name, dims) of weight, then bias.
    names: Vec<(String, Vec<i64>)>,
}

struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    op: String,
    ints: HashMap<String, Vec<i64>>,
}

struct Tensor {
    dims: Vec<i64>,
    data: Vec<f32>,
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

fn varints(f: &Field<'_>, out: &mut Vec<i64>) -> Result<(), String> {
    match *f {
        Field::Varint(_, v) => out.push(v as i64),
        Field::Bytes(_, b) => out.extend(pb::packed_varints(b)?.into_iter().map(|v| v as i64)),
        _ => return Err("a repeated integer field has an unexpected wire type".into()),
    }
    Ok(())
}

fn node(buf: &[u8]) -> Result<Node, String> {
    let mut n = Node {
        inputs: Vec::new(),
        outputs: Vec::new(),
        op: String::new(),
        ints: HashMap::new(),
    };
    for f in pb::fields(buf)? {
        match f {
            Field::Bytes(1, b) => n.inputs.push(utf8(b)?),
            Field::Bytes(2, b) => n.outputs.push(utf8(b)?),
            Field::Bytes(4, b) => n.op = utf8(b)?,
            Field::Bytes(5, attr) => {
                let mut name = String::new();
                let mut values = Vec::new();
                for a in pb::fields(attr)? {
                    match a {
                        Field::Bytes(1, b) => name = utf8(b)?,
                        ref
                        v @ (Field::Varint(3, _) | Field::Varint(8, _) | Field::Bytes(8, _)) => {
                            varints(v, &mut values)?
                        }
                        _ => {}
                    }
                }
                n.ints.insert(name, values);
            }
            _ => {}
        }
    }
    Ok(n)
}

fn tensor(buf: &[u8]) -> Result<(String, Tensor), String> {
    let (mut name, mut dims, mut data, mut dtype) = (String::new(), Vec::new(), Vec::new(), 1);
    for f in pb::fields(buf)? {
        match f {
            ref d @ (Field::Varint(1, _) | Field::Bytes(1, _)) => varints(d, &mut dims)?,
            Field::Varint(2, t) => dtype = t,
            Field::Bytes(8, b) => name = utf8(b)?,
            Field::Bytes(9, raw) | Field::Bytes(4, raw) => data.extend(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            Field::Fixed32(4, c) => data.push(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            _ => {}
        }
    }
    if dtype != 1 {
        // Not float32 (the Reshape's shape, int64): kept by name only.
        data.clear();
    }
    Ok((name, Tensor { dims, data }))
}

fn graph_of(model: &[u8]) -> Result<&[u8], String> {
    pb::fields(model)?
        .into_iter()
        .find_map(|f| match f {
            Field::Bytes(7, g) => Some(g),
            _ => None,
        })
        .ok_or_else(|| "no graph in the file".to_string())
}

impl TailGraph {
    /// Reads a tail graph whose input map is `[channels, h, w]`.
    pub fn read(bytes: Vec<u8>, map: [usize; 3]) -> Result<TailGraph, String> {
        let mut nodes = Vec::new();
        let mut inits = HashMap::new();
        for f in pb::fields(graph_of(&bytes)?)? {
            match f {
                Field::Bytes(1, b) => nodes.push(node(b)?),
                Field::Bytes(5, b) => {
                    let (name, t) = tensor(b)?;
                    inits.insert(name, t);
                }
                _ => {}
            }
        }
        let [channels, h, w] = map;
        let mut layers = Vec::new();
        let mut names = Vec::new();
        let mut current = None::<String>;
        let mut c = channels;
        let mut pooled = false;
        let scalar = |name: Option<&String>, default: f32| -> Result<f32, String> {
            match name.filter(|n| !n.is_empty()) {
                None => Ok(default),
                Some(n) => inits
                    .get(n)
                    .and_then(|t| t.data.first().copied())
                    .ok_or_else(|| format!("Clip bound `{n}` is not a constant")),
            }
        };
        for n in &nodes {
            if let Some(cur) = &current {
                if n.inputs.first() != Some(cur) {
                    return Err(format!(
                        "the tail is not a chain: a {} node does not read `{cur}`",
                        n.op
                    ));
                }
            }
            if pooled && n.op != "Flatten" {
                return Err(format!("a {} node follows the pooling", n.op));
            }
            match n.op.as_str() {
                "Reshape" if layers.is_empty() && current.is_none() => {}
                "Conv" => {
                    let get = |k: &str| n.ints.get(k).cloned().unwrap_or_default();
                    let (wn, bn) = match n.inputs.as_slice() {
                        [_, wn, bn] => (wn, bn),
                        _ => return Err("a Conv node without a bias".into()),
                    };
                    let (wt, bt) = match (inits.get(wn), inits.get(bn)) {
                        (Some(a), Some(b)) => (a, b),
                        _ => return Err(format!("Conv weights `{wn}` are not initializers")),
                    };
                    let group = get("group").first().copied().unwrap_or(1) as usize;
                    let kernel = get("kernel_shape");
                    let strides = get("strides");
                    if strides.iter().any(|&s| s != 1) || get("dilations").iter().any(|&d| d != 1) {
                        return Err("a Conv with stride or dilation other than 1".into());
                    }
                    let out = *wt.dims.first().unwrap_or(&0) as usize;
                    if bt.data.len() != out {
                        return Err(format!("Conv bias `{bn}` does not match its weights"));
                    }
                    let b = Array1::from_vec(bt.data.clone());
                    let layer = match (kernel.as_slice(), group) {
                        ([1, 1], 1) if wt.dims == [out as i64, c as i64, 1, 1] => {
                            Layer::Pointwise {
                                w: Array2::from_shape_vec((out, c), wt.data.clone())
                                    .map_err(|e| e.to_string())?,
                                b,
                            }
                        }
                        ([3, 3], g)
                            if g == c
                                && out == c
                                && get("pads") == [1, 1, 1, 1]
                                && wt.dims == [c as i64, 1, 3, 3] =>
                        {
                            Layer::Depthwise {
                                w: Array2::from_shape_vec((c, 9), wt.data.clone())
                                    .map_err(|e| e.to_string())?,
                                b,
                            }
                        }
                        _ => {
                            return Err(format!(
                                "a Conv with kernel {kernel:?}, group {group} and weights {:?}: only 1×1 and depthwise 3×3 (padding 1) are trained",
                                wt.dims
                            ))
                        }
                    };
                    names.push((wn.clone(), wt.dims.clone()));
                    names.push((bn.clone(), bt.dims.clone()));
                    c = out;
                    layers.push(layer);
                }
                "Clip" => layers.push(Layer::Clip {
                    min: scalar(n.inputs.get(1), f32::NEG_INFINITY)?,
                    max: scalar(n.inputs.get(2), f32::INFINITY)?,
                }),
                "Relu" => layers.push(Layer::Clip {
                    min: 0.0,
                    max: f32::INFINITY,
                }),
                "GlobalAveragePool" => pooled = true,
                "Flatten" if pooled => {}
                op => {
                    return Err(format!(
                        "the tail holds a {op} node, which qcyn's trainer does not implement"
                    ))
                }
            }
            current = n.outputs.first().cloned();
        }
        if !pooled || names.is_empty() {
            return Err("the tail has no convolution or no global average pooling".into());
        }
        Ok(TailGraph {
            bytes,
            tail: Tail {
                layers,
                channels,
                h,
                w,
            },
            names,
        })
    }

    /// The graph's bytes with `tail`'s weights written into its initializers.
    pub fn write(&self, tail: &Tail) -> Result<Vec<u8>, String> {
        let params = tail.params();
        if params.len() != self.names.len() {
            return Err("the tail does not have this graph's layers".into());
        }
        let values: HashMap<&str, (&[i64], &[f32])> = self
            .names
            .iter()
            .zip(params)
            .map(|((n, d), p)| (n.as_str(), (d.as_slice(), p)))
            .collect();
        let mut graph = Vec::new();
        for f in pb::fields(graph_of(&self.bytes)?)? {
            match f {
                Field::Bytes(5, b) => {
                    let (name, _) = tensor(b)?;
                    match values.get(name.as_str()) {
                        Some((dims, data)) => {
                            pb::bytes(&mut graph, 5, &pb::tensor(&name, dims, data))
                        }
                        None => f.write(&mut graph),
                    }
                }
                other => other.write(&mut graph),
            }
        }
        let mut out = Vec::with_capacity(self.bytes.len());
        for f in pb::fields(&self.bytes)? {
            match f {
                Field::Bytes(7, _) => pb::bytes(&mut out, 7, &graph),
                other => other.write(&mut out),
            }
        }
        Ok(out)
    }
}

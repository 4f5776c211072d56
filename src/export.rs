//! `qcyn export`: a bundle as one ONNX graph, from the normalised image tensor to class
//! probabilities, that `onnxruntime` in any language runs with nothing else.
//!
//! The backbone's graph is kept byte for byte, with three edits made at the level of protobuf
//! fields (no ONNX library is needed, and every field qcyn does not touch is copied as it is):
//! its input is renamed `image`; the head is appended as nodes
//! `Sub(features, mean) → Div(·, scale) → Gemm(·, weights, bias; transB) → Softmax(axis 1)`
//! with output `probabilities` `[N, classes]`; and the metadata records `classes` (a JSON list),
//! `mean`, `std`, `input_size` (`[height, width]`), `layout`, `colour`, `scale`, `resize` and the
//! model's name. The backbone's own feature output stays as a second output.
//!
//! Whole-image bundles only: a fused bundle runs several backbones, and a face bundle a detector
//! and an alignment before its embedder, which one graph of this kind cannot hold; both are
//! refused with what to do instead.
use std::path::Path;

use serde_json::json;

use crate::bundle::Bundle;
use crate::error::{Error, Result};
use crate::models::{Model, ModelKind};
use crate::onnx_proto as pb;

/// Name of the exported graph's input.
pub const INPUT: &str = "image";
/// Name of the exported graph's probability output.
pub const OUTPUT: &str = "probabilities";

/// What [`export`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The file written.
    pub path: std::path::PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Input name and shape (`N` dynamic).
    pub input: String,
    /// Output name and shape.
    pub output: String,
    /// The metadata written, key by key.
    pub metadata: Vec<(String, String)>,
}

/// Writes `bundle` (trained on `model`, whose ONNX file must still be the one it was fitted with)
/// as one ONNX file at `out`, atomically.
pub fn export(bundle: &Bundle, model: &Model, out: &Path) -> Result<ExportReport> {
    if let Some(t) = &bundle.tail {
        return Err(Error::config(
            format!(
                "this bundle was fitted with --unfreeze {}: its features come from the frozen prefix and the trained tail {}, which `qcyn export` does not join into one graph yet",
                t.blocks,
                t.file.display()
            ),
            Some("use `qcyn predict` for it, or export a bundle fitted without --unfreeze".into()),
        ));
    }
    match model.manifest.kind() {
        ModelKind::Whole => {}
        ModelKind::Fusion => {
            return Err(Error::config(
                format!(
                    "the bundle's model `{}` fuses several backbones; `qcyn export` writes one backbone and its head",
                    model.manifest.name
                ),
                Some("fit a bundle on one of its parts (e.g. --model mobilenetv2) to export it".into()),
            ))
        }
        ModelKind::Face => {
            return Err(Error::config(
                "face bundles are not exported: a face bundle needs the detector and the alignment before its embedder, which do not fit one image-to-probabilities graph",
                Some("use `qcyn predict` or `qcyn serve` for face bundles".into()),
            ))
        }
    }
    let whole = model.manifest.whole().expect("a whole-image model");
    let file = model.onnx_path().ok_or_else(|| {
        Error::config(
            format!("model `{}` names no ONNX file", model.manifest.name),
            None,
        )
    })?;
    let bytes = std::fs::read(&file).map_err(|e| Error::io("cannot read model", &file, e))?;
    let sha = {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(&bytes))
    };
    bundle.check_model(model, &sha)?;
    let head = &bundle.head;
    if head.dim != whole.output.dim {
        return Err(Error::config(
            format!(
                "the bundle's head takes {} features but model `{}` gives {}",
                head.dim, model.manifest.name, whole.output.dim
            ),
            Some("fit the bundle again with this model".into()),
        ));
    }
    let p = &whole.preprocess;
    let list = |v: &[f32; 3]| format!("[{}]", v.map(|x| x.to_string()).join(","));
    let metadata: Vec<(String, String)> = vec![
        ("classes".into(), json!(bundle.classes).to_string()),
        ("mean".into(), list(&p.mean)),
        ("std".into(), list(&p.std)),
        (
            "input_size".into(),
            json!([whole.input.height, whole.input.width]).to_string(),
        ),
        (
            "layout".into(),
            serde_json::to_value(whole.input.layout)
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
        ),
        (
            "colour".into(),
            serde_json::to_value(p.colour)
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
        ),
        ("scale".into(), json!(p.scale).to_string()),
        (
            "resize".into(),
            format!(
                "{} to {}",
                serde_json::to_value(p.resize)
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_default(),
                p.resize_to
                    .map_or_else(|| "the input size".to_string(), |r| r.to_string())
            ),
        ),
        (
            "preprocess".into(),
            "decode, resize as `resize` says, colour order `colour`, x / scale, then (x - mean) / std per channel".into(),
        ),
        ("model".into(), model.manifest.name.clone()),
        (
            "precision".into(),
            serde_json::to_value(model.precision)
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .unwrap_or_default(),
        ),
        ("qcyn_version".into(), env!("CARGO_PKG_VERSION").into()),
    ];
    let graph = rewrite_graph(&bytes, &whole.input.name, &whole.output.features, bundle).map_err(
        |why| Error::bad_file(&file, format!("cannot read the ONNX graph: {why}"), None),
    )?;
    let mut model_bytes = graph;
    for (k, v) in &metadata {
        let mut entry = Vec::new();
        pb::bytes(&mut entry, 1, k.as_bytes());
        pb::bytes(&mut entry, 2, v.as_bytes());
        pb::bytes(&mut model_bytes, 14, &entry);
    }
    crate::atomic::write_atomic(out, &model_bytes)?;
    // A file to share: readable by others, as any file written without a temporary would be.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o644));
    }
    let layout = match whole.input.layout {
        crate::models::Layout::Nchw => {
            format!("[N, 3, {}, {}]", whole.input.height, whole.input.width)
        }
        crate::models::Layout::Nhwc => {
            format!("[N, {}, {}, 3]", whole.input.height, whole.input.width)
        }
    };
    Ok(ExportReport {
        path: out.to_path_buf(),
        bytes: model_bytes.len() as u64,
        input: format!("{INPUT} float32 {layout}"),
        output: format!("{OUTPUT} float32 [N, {}]", bundle.classes.len()),
        metadata,
    })
}

/// The model's bytes with the graph (field 7) rewritten: `input` renamed [`INPUT`] wherever it
/// occurs, and the head's initializers, nodes and output appended.
fn rewrite_graph(
    model: &[u8],
    input: &str,
    features: &str,
    bundle: &Bundle,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(model.len() + bundle.head.weights.len() * 4 + 4096);
    let mut found = false;
    for f in pb::fields(model)? {
        match f {
            pb::Field::Bytes(7, graph) => {
                found = true;
                let g = graph_with_head(graph, input, features, bundle)?;
                pb::bytes(&mut out, 7, &g);
            }
            other => other.write(&mut out),
        }
    }
    if !found {
        return Err("no graph in the file".into());
    }
    Ok(out)
}

fn graph_with_head(
    graph: &[u8],
    input: &str,
    features: &str,
    bundle: &Bundle,
) -> std::result::Result<Vec<u8>, String> {
    let rename = |s: &[u8]| -> Vec<u8> {
        if s == input.as_bytes() {
            INPUT.as_bytes().to_vec()
        } else {
            s.to_vec()
        }
    };
    let mut out = Vec::with_capacity(graph.len() + 4096);
    let mut renamed_input = false;
    for f in pb::fields(graph)? {
        match f {
            // node: rename the input wherever a node reads it.
            pb::Field::Bytes(1, node) => {
                let mut n = Vec::with_capacity(node.len());
                for nf in pb::fields(node)? {
                    match nf {
                        pb::Field::Bytes(1, name) => pb::bytes(&mut n, 1, &rename(name)),
                        other => other.write(&mut n),
                    }
                }
                pb::bytes(&mut out, 1, &n);
            }
            // input (ValueInfoProto): its name.
            pb::Field::Bytes(11, vi) => {
                let mut v = Vec::with_capacity(vi.len());
                for vf in pb::fields(vi)? {
                    match vf {
                        pb::Field::Bytes(1, name) => {
                            renamed_input |= name == input.as_bytes();
                            pb::bytes(&mut v, 1, &rename(name));
                        }
                        other => other.write(&mut v),
                    }
                }
                pb::bytes(&mut out, 11, &v);
            }
            other => other.write(&mut out),
        }
    }
    if !renamed_input {
        return Err(format!(
            "the graph has no input `{input}` (the manifest's input name)"
        ));
    }
    let h = &bundle.head;
    let (k, d) = (h.classes as i64, h.dim as i64);
    for (name, dims, data) in [
        ("qcyn_mean", vec![d], &h.mean),
        ("qcyn_scale", vec![d], &h.scale),
        ("qcyn_weights", vec![k, d], &h.weights),
        ("qcyn_bias", vec![k], &h.bias),
    ] {
        pb::bytes(&mut out, 5, &pb::tensor(name, &dims, data));
    }
    let node = |inputs: &[&str], output: &str, op: &str, attrs: &[(&str, i64)]| {
        let mut n = Vec::new();
        for i in inputs {
            pb::bytes(&mut n, 1, i.as_bytes());
        }
        pb::bytes(&mut n, 2, output.as_bytes());
        pb::bytes(&mut n, 3, format!("qcyn_{}", op.to_lowercase()).as_bytes());
        pb::bytes(&mut n, 4, op.as_bytes());
        for (a, v) in attrs {
            let mut at = Vec::new();
            pb::bytes(&mut at, 1, a.as_bytes());
            pb::varint_field(&mut at, 3, *v as u64);
            pb::varint_field(&mut at, 20, 2); // AttributeType INT
            pb::bytes(&mut n, 5, &at);
        }
        n
    };
    for n in [
        node(&[features, "qcyn_mean"], "qcyn_centred", "Sub", &[]),
        node(
            &["qcyn_centred", "qcyn_scale"],
            "qcyn_standardised",
            "Div",
            &[],
        ),
        node(
            &["qcyn_standardised", "qcyn_weights", "qcyn_bias"],
            "qcyn_logits",
            "Gemm",
            &[("transB", 1)],
        ),
        node(&["qcyn_logits"], OUTPUT, "Softmax", &[("axis", 1)]),
    ] {
        pb::bytes(&mut out, 1, &n);
    }
    pb::bytes(&mut out, 12, &pb::value_info(OUTPUT, k));
    Ok(out)
}

//! `qcyn models`: list the known backbones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use qcyn::models::Registry;
use serde_json::{json, Value};

use super::{print_json, Ctx};

pub(super) fn run(ctx: &Ctx) -> Result<ExitCode> {
    let registry = ctx.registry()?;
    let rows = rows(&registry);
    if ctx.global.json {
        print_json(&rows)?;
    } else {
        println!(
            "{:<20} {:<16} {:>6}  {:<9} {:<7} licence",
            "name", "input", "dim", "available", "weights"
        );
        for r in &rows {
            println!(
                "{:<20} {:<16} {:>6}  {:<9} {:<7} {}",
                format!(
                    "{}{}",
                    r["name"].as_str().unwrap_or(""),
                    if r["default"] == true { " *" } else { "" }
                ),
                r["input"].as_str().unwrap_or(""),
                r["feature_dim"],
                if r["available"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                if r["random_weights"].as_bool() == Some(true) {
                    "RANDOM"
                } else {
                    "trained"
                },
                r["licence"].as_str().unwrap_or("")
            );
        }
        println!(
            "* the default model; models folder: {}",
            registry.dir.display()
        );
        if rows.iter().any(|r| r["available"].as_bool() != Some(true)) {
            println!(
                "missing files are built by {}",
                qcyn::runtime::project_dir().join("scripts/setup").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One JSON row per known model: its files, whether they are installed, input, feature size,
/// licence and source.
// moves to the library
fn rows(registry: &Registry) -> Vec<Value> {
    let default = qcyn::models::default_model_name(registry);
    let mut rows = Vec::new();
    for m in &registry.models {
        let man = &m.manifest;
        // (file, sha256) of each ONNX file: one for whole-image models, detector and embedder for
        // face models; `path` and `sha256` below are the first.
        let files: Vec<(PathBuf, Option<String>)> = match man.kind {
            qcyn::models::ModelKind::Whole => m
                .onnx_path()
                .into_iter()
                .map(|p| (p, man.sha256.clone()))
                .collect(),
            qcyn::models::ModelKind::Face => [&man.detector, &man.embedder]
                .into_iter()
                .filter_map(|t| {
                    let t = t.as_ref()?;
                    let file = t.get("file")?.as_str()?;
                    let sha = t.get("sha256").and_then(|v| v.as_str()).map(String::from);
                    Some((m.resolve(file.as_ref()), sha))
                })
                .collect(),
        };
        let available = !files.is_empty() && files.iter().all(|(f, _)| f.is_file());
        let (size, dim) = match (&man.input, &man.output) {
            (Some(i), Some(o)) => (format!("{}x{}", i.width, i.height), o.dim),
            _ => {
                let e = man.embedder.as_ref();
                let get = |k: &str| {
                    e.and_then(|t| t.get(k))
                        .and_then(|v| v.as_integer())
                        .unwrap_or(0)
                };
                (format!("{0}x{0} faces", get("size")), get("dim") as usize)
            }
        };
        rows.push(json!({
            "name": man.name,
            "kind": man.kind,
            "path": files.first().map(|f| &f.0),
            "sha256": files.first().and_then(|f| f.1.clone()),
            "files": files.iter().map(|(p, sha)| json!({"path": p, "sha256": sha})).collect::<Vec<_>>(),
            "default": man.name == default,
            "available": available,
            "random_weights": man.random_weights,
            "input": size,
            "feature_dim": dim,
            "licence": man.licence,
            "source": man.source,
            "description": man.description,
            "manifest": m.manifest_path,
        }));
    }
    rows
}

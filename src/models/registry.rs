//! The models folder: every manifest in it, fused models resolved into their parts, the rows of
//! `qcyn models`, and which model is the default.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::models::{is_fused_name, Model, ModelKind, ModelManifest, ModelSpec, Precision};

/// All manifests in a models folder.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The folder searched.
    pub dir: PathBuf,
    /// Models sorted by name (fused models with their parts resolved).
    pub models: Vec<Model>,
}

impl Registry {
    /// Reads every `*.toml` manifest in `dir`; a fused model's parts must be whole-image models
    /// of the same folder.
    pub fn load(dir: &Path) -> Result<Registry> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io("cannot read models folder", dir, e))?;
        let mut models = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot read models folder", dir, e))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                models.push(Model::load(&path)?);
            }
        }
        models.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        let mut registry = Registry {
            dir: dir.to_path_buf(),
            models,
        };
        for i in 0..registry.models.len() {
            if registry.models[i].manifest.kind() == ModelKind::Fusion {
                let resolved = registry.resolve(registry.models[i].clone())?;
                registry.models[i] = resolved;
            }
        }
        Ok(registry)
    }

    /// Finds a model by name, reads a manifest given as a path, or fuses models named with `+`
    /// (`xception+mobilenetv2`: each part a whole-image model of this folder).
    pub fn get(&self, name: &str) -> Result<Model> {
        if name.ends_with(".toml") {
            return self.resolve(Model::load(Path::new(name))?);
        }
        if let Some(m) = self.models.iter().find(|m| m.manifest.name == name) {
            return Ok(m.clone());
        }
        if is_fused_name(name) {
            let parts: Vec<String> = name.split('+').map(|p| p.trim().to_string()).collect();
            let manifest = ModelManifest {
                name: parts.join("+"),
                description: format!("fusion of {}", parts.join(" and ")),
                random_weights: false,
                licence: String::new(),
                export: None,
                source: None,
                spec: ModelSpec::Fusion(crate::models::FusionSpec {
                    parts: parts.clone(),
                }),
            };
            return self.resolve(Model {
                manifest,
                manifest_path: self.dir.join(format!("{name}.toml")),
                parts: Vec::new(),
                precision: Precision::Fp32,
            });
        }
        Err(self.unknown(name, None))
    }

    /// The models that have cut points for `fit --unfreeze`, each with its block counts.
    pub fn tails(&self) -> Vec<(String, Vec<usize>)> {
        self.models
            .iter()
            .filter_map(|m| {
                let w = m.manifest.whole()?;
                (!w.tails.is_empty()).then(|| {
                    (
                        m.manifest.name.clone(),
                        w.tails.iter().map(|t| t.blocks).collect(),
                    )
                })
            })
            .collect()
    }

    /// `model` set to run at `precision` (a fused model's parts too), or an error naming the
    /// models of this folder that have an int8 graph.
    pub fn with_precision(&self, mut model: Model, precision: Precision) -> Result<Model> {
        if !model.has_precision(precision) {
            let what = match model.manifest.kind() {
                ModelKind::Face => format!(
                    "model `{}` is a face model: it has no int8 graph (--precision int8 is for whole-image models)",
                    model.manifest.name
                ),
                ModelKind::Fusion => format!(
                    "model `{}` has no int8 graph: not every part of it has one",
                    model.manifest.name
                ),
                ModelKind::Whole => format!(
                    "model `{}` has no int8 graph (its manifest {} has no [int8] table)",
                    model.manifest.name,
                    model.manifest_path.display()
                ),
            };
            let with = int8_models(self);
            let hint = if with.is_empty() {
                "no model of this models folder has one; use --precision fp32".to_string()
            } else {
                format!(
                    "models with an int8 graph: {} (or use --precision fp32)",
                    with.join(", ")
                )
            };
            return Err(Error::config(what, Some(hint)));
        }
        model.precision = precision;
        for part in &mut model.parts {
            part.precision = precision;
        }
        Ok(model)
    }

    fn unknown(&self, name: &str, within: Option<&Path>) -> Error {
        let known: Vec<&str> = self
            .models
            .iter()
            .map(|m| m.manifest.name.as_str())
            .collect();
        let what = match within {
            Some(p) => format!(
                "unknown model `{name}` in the fused model {} (models folder {})",
                p.display(),
                self.dir.display()
            ),
            None => format!(
                "unknown model `{name}` (models folder {})",
                self.dir.display()
            ),
        };
        Error::config(
            what,
            Some(format!("known models: {}; `qcyn models` lists them, or pass a manifest path ending in .toml; fuse whole-image models with `+`, e.g. xception+mobilenetv2", known.join(", "))),
        )
    }

    /// Resolves a fused model's parts (other kinds are returned as they are); random weights and
    /// licences follow the parts.
    fn resolve(&self, mut model: Model) -> Result<Model> {
        let ModelSpec::Fusion(spec) = &model.manifest.spec else {
            return Ok(model);
        };
        let mut parts = Vec::new();
        for name in &spec.parts {
            let within = Some(model.manifest_path.as_path());
            if name.is_empty() {
                return Err(Error::config(
                    format!("`{}` names an empty part", model.manifest.name),
                    Some("join model names with `+`, e.g. xception+mobilenetv2".into()),
                ));
            }
            let part = self
                .models
                .iter()
                .find(|m| &m.manifest.name == name)
                .ok_or_else(|| self.unknown(name, within))?;
            match part.manifest.kind() {
                ModelKind::Whole => {}
                ModelKind::Face => {
                    return Err(Error::config(
                        format!(
                            "`{}` fuses the face model `{name}`: only whole-image models can be fused",
                            model.manifest.name
                        ),
                        Some(format!(
                            "a face model gives one vector per face, not per image: use `--model {name}` on its own"
                        )),
                    ))
                }
                ModelKind::Fusion => {
                    return Err(Error::config(
                        format!(
                            "`{}` fuses `{name}`, which is itself fused",
                            model.manifest.name
                        ),
                        Some("list the whole-image models themselves".into()),
                    ))
                }
            }
            if parts.iter().any(|p: &Model| &p.manifest.name == name) {
                return Err(Error::config(
                    format!("`{}` names `{name}` twice", model.manifest.name),
                    Some("each part once".into()),
                ));
            }
            parts.push(part.clone());
        }
        model.manifest.random_weights = parts.iter().any(|p| p.manifest.random_weights);
        if model.manifest.licence.is_empty() {
            model.manifest.licence = parts
                .iter()
                .map(|p| p.manifest.licence.as_str())
                .collect::<Vec<_>>()
                .join(" + ");
        }
        model.parts = parts;
        Ok(model)
    }
}

/// The names of the models (fused ones included) that can run with `--precision int8`.
pub fn int8_models(registry: &Registry) -> Vec<String> {
    registry
        .models
        .iter()
        .filter(|m| m.has_precision(Precision::Int8))
        .map(|m| m.manifest.name.clone())
        .collect()
}

/// One row of `qcyn models`: what a manifest names and whether its files are installed.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Whole-image, face or fusion.
    pub kind: ModelKind,
    /// The first ONNX file (the only one of a whole-image model).
    pub path: Option<PathBuf>,
    /// Its pinned sha256.
    pub sha256: Option<String>,
    /// Every ONNX file with its pinned sha256.
    pub files: Vec<ModelFile>,
    /// The int8 graph (`--precision int8`), when the manifest has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8: Option<ModelFile>,
    /// The block counts `fit --unfreeze N` can fine-tune (its `[[tail]]` tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfreeze: Vec<usize>,
    /// Whether this is the default model.
    pub default: bool,
    /// Why it is the default (only on the default's row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_reason: Option<String>,
    /// Whether every file is installed.
    pub available: bool,
    /// True when the weights are random (latency only).
    pub random_weights: bool,
    /// Input size, e.g. `224x224`, `112x112 faces`, or `299x299+224x224` for a fusion.
    pub input: String,
    /// Feature dimension.
    pub feature_dim: usize,
    /// A fused model's parts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
    /// Licence of the weights.
    pub licence: String,
    /// Where the weights come from.
    pub source: Option<toml::Table>,
    /// One line about the model.
    pub description: String,
    /// The manifest file.
    pub manifest: PathBuf,
}

/// An ONNX file of a model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelFile {
    /// Where it is (resolved).
    pub path: PathBuf,
    /// Its pinned sha256.
    pub sha256: Option<String>,
}

/// Input size and feature dimension of a model.
fn shape(m: &Model) -> (String, usize) {
    match &m.manifest.spec {
        ModelSpec::Whole(w) => (
            format!("{}x{}", w.input.width, w.input.height),
            w.output.dim,
        ),
        ModelSpec::Face(f) => (format!("{0}x{0} faces", f.embedder.size), f.embedder.dim),
        ModelSpec::Fusion(_) => {
            let parts: Vec<(String, usize)> = m.parts.iter().map(shape).collect();
            (
                parts
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join("+"),
                parts.iter().map(|p| p.1).sum(),
            )
        }
    }
}

impl Registry {
    /// One summary per model, in name order, the default marked.
    pub fn summaries(&self) -> Vec<ModelSummary> {
        let default = default_model(self);
        self.models
            .iter()
            .map(|m| {
                let man = &m.manifest;
                let files: Vec<ModelFile> = m
                    .files()
                    .into_iter()
                    .map(|(path, sha256)| ModelFile { path, sha256 })
                    .collect();
                let (input, feature_dim) = shape(m);
                let int8 = m
                    .manifest
                    .whole()
                    .and_then(|w| w.int8.as_ref())
                    .map(|q| ModelFile {
                        path: m.resolve(&q.file),
                        sha256: Some(q.sha256.clone()),
                    });
                let is_default = man.name == default.name;
                ModelSummary {
                    name: man.name.clone(),
                    kind: man.kind(),
                    path: files.first().map(|f| f.path.clone()),
                    sha256: files.first().and_then(|f| f.sha256.clone()),
                    available: !files.is_empty() && files.iter().all(|f| f.path.is_file()),
                    files,
                    int8,
                    unfreeze: m
                        .manifest
                        .whole()
                        .map(|w| w.tails.iter().map(|t| t.blocks).collect())
                        .unwrap_or_default(),
                    default: is_default,
                    default_reason: is_default.then(|| default.reason.clone()),
                    random_weights: man.random_weights,
                    input,
                    feature_dim,
                    parts: m.parts.iter().map(|p| p.manifest.name.clone()).collect(),
                    licence: man.licence.clone(),
                    source: man.source.clone(),
                    description: man.description.clone(),
                    manifest: m.manifest_path.clone(),
                }
            })
            .collect()
    }
}

/// The default model and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultModel {
    /// Its name (`--model NAME`).
    pub name: String,
    /// One sentence for `qcyn models`.
    pub reason: String,
}

/// The default backbone, never one with random weights:
/// 1. `xception71` (the tutorial's) when a manifest with pretrained weights and its file are
///    installed;
/// 2. else `xception+mobilenetv2`, the fusion of the two pretrained models, when both are
///    installed: on the sets measured for issue 13 it was ahead of each alone or level with
///    the better one;
/// 3. else the first installed of `xception`, `mobilenetv2`;
/// 4. else `mobilenetv2` (which `scripts/setup` installs).
pub fn default_model(registry: &Registry) -> DefaultModel {
    let ready = |name: &str| {
        registry.models.iter().find(|m| {
            m.manifest.name == name
                && !m.manifest.random_weights
                && !m.files().is_empty()
                && m.files().iter().all(|(p, _)| p.is_file())
        })
    };
    if ready("xception71").is_some() {
        return DefaultModel {
            name: "xception71".into(),
            reason: "the tutorial's Xception71, with its pretrained weights installed".into(),
        };
    }
    const FUSION: &str = "xception+mobilenetv2";
    let fusion_ready =
        ready(FUSION).is_some() || (ready("xception").is_some() && ready("mobilenetv2").is_some());
    if fusion_ready {
        return DefaultModel {
            name: FUSION.into(),
            reason: "Xception71's pretrained weights are not installed (they cannot be fetched offline; scripts/export_xception71.py exports them online), so the fusion of the pretrained xception and mobilenetv2: the most accurate choice measured, at about a tenth of mobilenetv2's speed; `--model mobilenetv2` for speed".into(),
        };
    }
    for name in ["xception", "mobilenetv2"] {
        if ready(name).is_some() {
            return DefaultModel {
                name: name.into(),
                reason: format!("the only installed pretrained model of xception71, {FUSION}, xception and mobilenetv2 (run scripts/setup for the others)"),
            };
        }
    }
    DefaultModel {
        name: "mobilenetv2".into(),
        reason: "no pretrained model is installed yet: run scripts/setup".into(),
    }
}

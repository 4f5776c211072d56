//! Bundle: everything needed to predict, in one JSON file — the backbone's identity and a full copy
//! of its manifest (so preprocessing travels with the head), class names, the head's weights, how
//! it was trained and how it scored on validation images.
//!
//! Written atomically; loading checks the format version, and [`Bundle::check_model`] refuses a
//! backbone other than the one the head was trained on.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::face::openset::OpenSet;
use crate::face::FaceOptions;
use crate::head::{ClassWeight, CvReport, SoftmaxHead, SoftmaxValidParams, SolverStats};
use crate::metrics::Report;
use crate::models::{Model, ModelManifest, ModelSpec, Precision};
use crate::split::SplitSpec;

/// File name of the bundle inside a bundle folder.
pub const BUNDLE_FILE: &str = "bundle.json";

/// Version of the bundle format; bumped on any incompatible change.
///
/// 2: typed manifests (`detector`/`embedder` tables checked), typed open set.
pub const BUNDLE_FORMAT_VERSION: u32 = 2;

/// The backbone a bundle was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Model name (`--model NAME`).
    pub name: String,
    /// sha256 of the model's ONNX file (or of what identifies a face pipeline), lowercase hex.
    pub sha256: String,
    /// The whole manifest, preprocessing included.
    pub manifest: ModelManifest,
    /// A fused model's parts' manifests, in order (empty for other kinds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ModelManifest>,
    /// The graph the features came from (`fp32` for bundles written before int8 existed);
    /// prediction runs the same one.
    #[serde(default)]
    pub precision: Precision,
}

/// Where the training/validation split came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitSource {
    /// Made by rule and seed (`qcyn split` / `qcyn fit` options).
    Rule {
        /// Rule, test hold-out and seed.
        spec: SplitSpec,
        /// Manifest written for it, if any.
        #[serde(default)]
        manifest: Option<PathBuf>,
    },
    /// Read from a split manifest.
    Manifest {
        /// The manifest file.
        path: PathBuf,
    },
    /// Read from PaddleHub list files.
    Lists {
        /// Folder of the list files.
        dir: PathBuf,
        /// Folder their paths are relative to.
        base: PathBuf,
    },
}

/// How the head was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// Where the split came from.
    pub split: SplitSource,
    /// The dataset folder (or list base).
    pub dataset_root: PathBuf,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Class weighting.
    pub class_weight: ClassWeight,
    /// Head hyperparameters (grid, folds, seed, solver limits).
    pub params: SoftmaxValidParams,
    /// How the L2 strength was chosen (`None` when one was given).
    pub cv: Option<CvReport>,
    /// How the final fit converged.
    pub refit: SolverStats,
}

/// A trained classifier, ready to predict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Version of qcyn that wrote it.
    pub qcyn_version: String,
    /// When it was written (UTC, RFC 3339).
    pub created: String,
    /// The backbone.
    pub model: ModelInfo,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// The softmax head.
    pub head: SoftmaxHead,
    /// How it was trained.
    pub training: TrainingConfig,
    /// Scores on the validation images (`None` when there were none).
    pub validation: Option<Report>,
    /// Face models: the open set (the "unknown" threshold and the class centroids).
    #[serde(default)]
    pub open_set: Option<OpenSet>,
    /// Face models: the face pipeline's options at training time (prediction uses the same).
    #[serde(default)]
    pub face_options: Option<FaceOptions>,
    /// `fit --unfreeze N`: the trained tail the features come from (prefix → this graph), its
    /// file relative to the bundle's folder and its sha256, checked before every prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<crate::unfreeze::TrainedTail>,
    /// sha256 of each training image's content, so `qcyn eval` never scores an image the head
    /// saw, wherever it was copied or renamed to.
    #[serde(default)]
    pub train_sha256: Vec<String>,
}

impl Bundle {
    /// A bundle stamped with this qcyn's version and the current time.
    pub fn new(
        model: &Model,
        sha256: impl Into<String>,
        classes: Vec<String>,
        head: SoftmaxHead,
        training: TrainingConfig,
        validation: Option<Report>,
    ) -> Bundle {
        Bundle {
            format_version: BUNDLE_FORMAT_VERSION,
            qcyn_version: env!("CARGO_PKG_VERSION").to_string(),
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            model: ModelInfo {
                name: model.manifest.name.clone(),
                sha256: sha256.into(),
                manifest: model.manifest.clone(),
                parts: model.parts.iter().map(|p| p.manifest.clone()).collect(),
                precision: model.precision,
            },
            classes,
            head,
            training,
            validation,
            open_set: None,
            face_options: None,
            tail: None,
            train_sha256: Vec::new(),
        }
    }

    /// Writes the bundle as JSON, atomically (temporary file in the same folder, then renamed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec(self).map_err(|e| {
            Error::config(
                format!("cannot serialise the bundle: {e}"),
                Some("this is a bug in qcyn".into()),
            )
        })?;
        json.push(b'\n');
        write_atomic(path, &json)
    }

    /// Reads a bundle, checking its format version and that its head is consistent.
    pub fn load(path: &Path) -> Result<Bundle> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::bad_file(
                    path,
                    "bundle not found",
                    Some(
                        "train one with `qcyn fit`, or pass the bundle file `qcyn fit` wrote"
                            .into(),
                    ),
                )
            } else {
                Error::io("cannot read bundle", path, e)
            }
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::bad_file(
                path,
                format!("bundle is damaged or truncated: {e}; re-run `qcyn fit`"),
                Some("bundles are written atomically, so this file was changed or cut after qcyn wrote it".into()),
            )
        })?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version.is_none() && value.get("head").is_none() {
            return Err(Error::bad_file(
                path,
                "is not a bundle (it has no format version and no head; a fit's report.json or split.json?)",
                Some("pass the bundle folder `qcyn fit --out` wrote, or the bundle.json inside it".into()),
            ));
        }
        if version != Some(BUNDLE_FORMAT_VERSION as u64) {
            let writer = value
                .get("qcyn_version")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            return Err(Error::bad_file(
                path,
                format!(
                    "bundle format version {} is not the one this qcyn {} reads ({BUNDLE_FORMAT_VERSION})",
                    version.map_or("(missing)".to_string(), |v| v.to_string()),
                    env!("CARGO_PKG_VERSION"),
                ),
                Some(format!("re-run `qcyn fit` with this qcyn, or use qcyn {writer}, which wrote it")),
            ));
        }
        let bundle: Bundle = serde_json::from_value(value).map_err(|e| {
            Error::bad_file(
                path,
                format!("invalid bundle: {e}"),
                Some("re-run `qcyn fit`".into()),
            )
        })?;
        let damaged =
            |msg: String| Err(Error::bad_file(path, msg, Some("re-run `qcyn fit`".into())));
        if let Err(msg) = bundle.head.validate() {
            return damaged(msg);
        }
        if bundle.classes.len() != bundle.head.classes {
            return damaged(format!(
                "bundle names {} classes but its head has {}",
                bundle.classes.len(),
                bundle.head.classes
            ));
        }
        Ok(bundle)
    }

    /// Errors when `model` (whose file hashes to `actual_sha256`) is not the backbone the bundle
    /// was trained on: another name, another file, or other preprocessing or outputs.
    pub fn check_model(&self, model: &Model, actual_sha256: &str) -> Result<()> {
        let want = &self.model;
        let got = &model.manifest;
        if got.name != want.name {
            return Err(Error::config(
                format!(
                    "this bundle was trained with model `{}`, not `{}`",
                    want.name, got.name
                ),
                Some(format!(
                    "pass --model {} (features of different models are not comparable)",
                    want.name
                )),
            ));
        }
        if model.precision != want.precision {
            return Err(Error::config(
                format!(
                    "this bundle was trained on the {} features of `{}`, not the {} ones",
                    want.precision, want.name, model.precision
                ),
                Some(format!(
                    "pass --precision {} (or leave --precision out: prediction uses the bundle's), or re-run `qcyn fit --precision {}`",
                    want.precision, model.precision
                )),
            ));
        }
        if !actual_sha256.eq_ignore_ascii_case(&want.sha256) {
            return Err(Error::config(
                format!(
                    "model `{}` is not the file this bundle was trained with: sha256 {} now, {} then",
                    want.name,
                    short(actual_sha256),
                    short(&want.sha256)
                ),
                Some("rebuild the original model file, or re-run `qcyn extract` and `qcyn fit` with this one".into()),
            ));
        }
        let mut changed = changed_sections(got, &want.manifest);
        if let ModelSpec::Fusion(_) = &got.spec {
            let now: Vec<&ModelManifest> = model.parts.iter().map(|p| &p.manifest).collect();
            if now.len() != want.parts.len() {
                changed.push("parts");
            } else {
                for (n, t) in now.iter().zip(&want.parts) {
                    changed.extend(changed_sections(n, t));
                }
            }
        }
        if !changed.is_empty() {
            return Err(Error::config(
                format!(
                    "model `{}` has changed since this bundle was trained: {} differ",
                    want.name,
                    changed.join(", ")
                ),
                Some("restore the manifest the bundle was trained with (a copy is inside the bundle), or re-run `qcyn fit`".into()),
            ));
        }
        let dim = match &got.spec {
            ModelSpec::Fusion(_) => Some(
                model
                    .parts
                    .iter()
                    .filter_map(|p| p.manifest.whole().map(|w| w.output.dim))
                    .sum(),
            ),
            _ => got.whole().map(|w| w.output.dim),
        };
        if let Some(dim) = dim {
            if dim != self.head.dim {
                return Err(Error::config(
                    format!(
                        "model `{}` gives {}-D features but the head expects {}",
                        want.name, dim, self.head.dim
                    ),
                    Some("re-run `qcyn fit`".into()),
                ));
            }
        }
        Ok(())
    }
}

/// The sections of a manifest that differ from the one a bundle was trained with.
fn changed_sections(got: &ModelManifest, then: &ModelManifest) -> Vec<&'static str> {
    let mut changed = Vec::new();
    match (&got.spec, &then.spec) {
        (ModelSpec::Whole(now), ModelSpec::Whole(then)) => {
            if now.input != then.input {
                changed.push("[input]");
            }
            if now.preprocess != then.preprocess {
                changed.push("[preprocess]");
            }
            if now.output != then.output {
                changed.push("[output]");
            }
        }
        (ModelSpec::Face(now), ModelSpec::Face(then)) => {
            if now.detector != then.detector {
                changed.push("[detector]");
            }
            if now.embedder != then.embedder {
                changed.push("[embedder]");
            }
        }
        (ModelSpec::Fusion(now), ModelSpec::Fusion(then)) => {
            if now.parts != then.parts {
                changed.push("parts");
            }
        }
        _ => changed.push("kind"),
    }
    changed
}

/// Where a bundle lives: `--out DIR` holds `bundle.json` and its reports; a path ending in
/// `.json` is the bundle file itself.
pub fn bundle_path(out: &Path) -> PathBuf {
    if out.extension().is_some_and(|e| e == "json") {
        out.to_path_buf()
    } else {
        out.join(BUNDLE_FILE)
    }
}

fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// A bundle file's folder and the prefix of the reports written beside it (`""` for
/// `bundle.json`; `name.` for `name.json`).
pub fn place(file: &Path) -> (PathBuf, String) {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let stem = if file.file_name().is_some_and(|n| n == BUNDLE_FILE) {
        String::new()
    } else {
        format!(
            "{}.",
            file.file_stem().unwrap_or_default().to_string_lossy()
        )
    };
    (dir, stem)
}

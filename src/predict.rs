//! Predict: bundle → preprocess → backbone → head → a label and every class's probability, per
//! image (and per face, for face models).
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Serialize;

use crate::bundle::Bundle;
use crate::cache::FeatureCache;
use crate::dataset::{self, Skipped};
use crate::error::Result;
use crate::extract::{extract, ExtractOptions};
use crate::face::openset::OpenSet;
use crate::features::Embedding;
use crate::models::ModelKind;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;

pub use crate::label::{NO_FACE, UNKNOWN};

/// Every class's probability, most probable first, for one image or face. Serialised as a JSON
/// object `{class: probability}` in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probabilities(Vec<(String, f32)>);

impl Probabilities {
    /// `p[i]` is class `classes[i]`'s probability; the `top_k` most probable are kept (all when
    /// `None`), most probable first, ties in class order.
    pub fn ranked(classes: &[String], p: &[f32], top_k: Option<usize>) -> Probabilities {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        Probabilities(
            order
                .into_iter()
                .take(top_k.unwrap_or(usize::MAX))
                .map(|i| (classes[i].clone(), p[i]))
                .collect(),
        )
    }

    /// The probability of `class`, when it is kept.
    pub fn get(&self, class: &str) -> Option<f32> {
        self.0.iter().find(|(c, _)| c == class).map(|&(_, p)| p)
    }

    /// `(class, probability)`, most probable first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f32)> {
        self.0.iter().map(|(c, p)| (c.as_str(), *p))
    }

    /// Number of classes kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no class is kept (an image that could not be read, or without a face).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Probabilities {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (c, p) in &self.0 {
            // As f64, the form earlier versions wrote (f32 widened exactly).
            map.serialize_entry(c, &f64::from(*p))?;
        }
        map.end()
    }
}

/// One face's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct FacePrediction {
    /// `[x, y, w, h]` in image pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Detector confidence.
    pub score: f32,
    /// Five landmarks (x, y): eyes, nose tip, mouth corners.
    pub landmarks: [[f32; 2]; 5],
    /// The most probable class, or `unknown`.
    pub label: String,
    /// Cosine similarity to the nearest known person (the open-set score).
    pub similarity: Option<f32>,
    /// Every class's probability, most probable first.
    pub probabilities: Probabilities,
}

/// One image's prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The image.
    #[serde(serialize_with = "dataset::lossy_path")]
    pub path: PathBuf,
    /// Only when the name is not UTF-8 (`path` is then lossy): its exact bytes, `%XX`-escaped
    /// ([`dataset::escape_path`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_escaped: Option<String>,
    /// The most probable class; for face models the label of the face that best matches a known
    /// class ([`crate::label`]), `unknown` when every face is a stranger, or `no_face`; `null`
    /// when the image could not be read.
    pub label: Option<String>,
    /// Every class's probability (the top `k` when asked), most probable first; for face models
    /// those of the face that gave the label (of the most similar face when `unknown`).
    pub probabilities: Probabilities,
    /// Face models: every face found, most prominent first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faces: Option<Vec<FacePrediction>>,
    /// Why the image could not be used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How to predict.
#[derive(Debug, Clone, Copy)]
pub struct PredictOptions {
    /// Keep only the `k` most probable classes (all when `None`).
    pub top_k: Option<usize>,
    /// Face models: override the bundle's unknown threshold (cosine); `Some(-1.0)` never answers
    /// unknown.
    pub unknown_threshold: Option<f32>,
    /// Extraction settings.
    pub extract: ExtractOptions,
}

/// Expands files, folders (searched recursively for images) and glob patterns into image paths,
/// in the order given, without duplicates. Inputs that match nothing are returned as skipped.
pub fn expand_inputs(inputs: &[String]) -> (Vec<PathBuf>, Vec<Skipped>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |p: PathBuf, out: &mut Vec<PathBuf>| {
        if seen.insert(p.clone()) {
            out.push(p);
        }
    };
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let (files, loops) = dataset::walk_files(path).unwrap_or_default();
            skipped.extend(loops);
            let found: Vec<PathBuf> = files
                .into_iter()
                .filter(|p| dataset::has_image_extension(p))
                .collect();
            if found.is_empty() {
                skipped.push(Skipped {
                    path: path.to_path_buf(),
                    reason: "folder holds no images".into(),
                });
            }
            for p in found {
                push(p, &mut out);
            }
        } else if path.exists() || std::fs::symlink_metadata(path).is_ok() {
            push(path.to_path_buf(), &mut out);
        } else if input.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(input)
                .map(|g| {
                    g.flatten()
                        .filter(|p| p.is_file() && dataset::has_image_extension(p))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            if found.is_empty() {
                skipped.push(Skipped {
                    path: path.to_path_buf(),
                    reason: "pattern matches no image".into(),
                });
            }
            for p in found {
                push(p, &mut out);
            }
        } else {
            skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: "no such file or folder".into(),
            });
        }
    }
    (out, skipped)
}

/// Predicts every path. Unreadable images get an entry with `error` set.
pub fn predict(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    bundle: &Bundle,
    paths: &[PathBuf],
    opts: &PredictOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<Prediction>> {
    let kind = pipeline.model.manifest.kind();
    let mut set = bundle.open_set.clone();
    if let (Some(set), Some(t)) = (set.as_mut(), opts.unknown_threshold) {
        set.threshold = t;
    }
    let extracted = extract(pipeline, cache, paths, opts.extract, reporter)?;
    let reasons: std::collections::HashMap<&Path, &str> = extracted
        .report
        .skipped
        .iter()
        .map(|s| (s.path.as_path(), s.reason.as_str()))
        .collect();
    let mut out = Vec::with_capacity(paths.len());
    for (path, emb) in paths.iter().zip(&extracted.embeddings) {
        let Some(emb) = emb else {
            out.push(Prediction {
                path: path.clone(),
                path_escaped: dataset::escaped_if_not_utf8(path),
                label: None,
                probabilities: Default::default(),
                faces: None,
                error: Some(
                    reasons
                        .get(path.as_path())
                        .copied()
                        .unwrap_or("could not be read")
                        .to_string(),
                ),
            });
            continue;
        };
        out.push(predict_one(
            path,
            emb,
            kind,
            bundle,
            set.as_ref(),
            opts.top_k,
        )?);
    }
    Ok(out)
}

/// One image's prediction from its embeddings, exactly as [`predict`] gives it for an image
/// file: for callers that embed images in memory ([`Pipeline::embed`], a server). `path` is the
/// name the entry carries.
pub fn predict_embedded(
    bundle: &Bundle,
    kind: ModelKind,
    path: &Path,
    embeddings: &[Embedding],
    opts: &PredictOptions,
) -> Result<Prediction> {
    let mut set = bundle.open_set.clone();
    if let (Some(set), Some(t)) = (set.as_mut(), opts.unknown_threshold) {
        set.threshold = t;
    }
    predict_one(path, embeddings, kind, bundle, set.as_ref(), opts.top_k)
}

fn predict_one(
    path: &Path,
    embeddings: &[Embedding],
    kind: ModelKind,
    bundle: &Bundle,
    set: Option<&OpenSet>,
    top_k: Option<usize>,
) -> Result<Prediction> {
    let classes = &bundle.classes;
    if embeddings.is_empty() {
        return Ok(Prediction {
            path: path.to_path_buf(),
            path_escaped: dataset::escaped_if_not_utf8(path),
            label: Some(NO_FACE.into()),
            probabilities: Default::default(),
            faces: (kind == ModelKind::Face).then(Vec::new),
            error: None,
        });
    }
    let d = embeddings[0].vector.len();
    let x = Array2::from_shape_vec(
        (embeddings.len(), d),
        embeddings.iter().flat_map(|e| e.vector.clone()).collect(),
    )
    .expect("vectors of one model have one length");
    let proba = bundle.head.try_predict_proba(x.view())?;
    let argmax = |row: usize| {
        let r = proba.row(row);
        (0..r.len()).fold(0, |best, i| if r[i] > r[best] { i } else { best })
    };
    if kind != ModelKind::Face {
        let p = proba.row(0).to_vec();
        return Ok(Prediction {
            path: path.to_path_buf(),
            path_escaped: dataset::escaped_if_not_utf8(path),
            label: Some(classes[argmax(0)].clone()),
            probabilities: Probabilities::ranked(classes, &p, top_k),
            faces: None,
            error: None,
        });
    }
    if embeddings[0].face.is_none() {
        // Face model without a face, embedded whole (`--no-face whole`): one answer, no box.
        let p = proba.row(0).to_vec();
        let similarity = set.map(|s| s.score(&embeddings[0].vector).1);
        let known = set.is_none_or(|s| similarity.unwrap_or(1.0) >= s.threshold);
        return Ok(Prediction {
            path: path.to_path_buf(),
            path_escaped: dataset::escaped_if_not_utf8(path),
            label: Some(if known {
                classes[argmax(0)].clone()
            } else {
                UNKNOWN.into()
            }),
            probabilities: Probabilities::ranked(classes, &p, top_k),
            faces: Some(Vec::new()),
            error: None,
        });
    }
    let labeller = crate::label::Labeller {
        head: &bundle.head,
        open_set: set,
    };
    let (labels, image) = labeller.label(embeddings)?;
    let faces: Vec<FacePrediction> = embeddings
        .iter()
        .zip(&labels)
        .map(|(e, l)| {
            let face = e.face.unwrap_or(crate::features::FaceBox {
                bbox: [0.0; 4],
                score: 0.0,
                landmarks: [[0.0; 2]; 5],
            });
            FacePrediction {
                bbox: face.bbox,
                score: face.score,
                landmarks: face.landmarks,
                label: if l.known {
                    classes[l.class].clone()
                } else {
                    UNKNOWN.into()
                },
                similarity: l.similarity,
                probabilities: Probabilities::ranked(classes, &l.probabilities, top_k),
            }
        })
        .collect();
    let shown = crate::label::representative_face(&labels, &image).unwrap_or(0);
    Ok(Prediction {
        path: path.to_path_buf(),
        path_escaped: dataset::escaped_if_not_utf8(path),
        label: Some(image.name(classes)),
        probabilities: faces[shown].probabilities.clone(),
        faces: Some(faces),
        error: None,
    })
}

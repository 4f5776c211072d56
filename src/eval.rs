//! Eval: the `qcyn eval` workflow. A bundle is scored on labelled images it was not trained on
//! (training images are recognised by content, wherever they were copied); classes the bundle does
//! not know are strangers, and face bundles report how the "unknown" threshold treats them.
use std::path::PathBuf;

use ndarray::Array2;
use serde::Serialize;

use crate::bundle::Bundle;
use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::{Error, Result};
use crate::extract::{extract, ExtractOptions};
use crate::face::openset::OpenSetEvaluation;
use crate::fit::{training_vector, Use};
use crate::metrics::Report;
use crate::models::ModelKind;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;

/// What `qcyn eval` reports (its `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Model name.
    pub model: String,
    /// Accuracy on the images of the bundle's classes.
    pub accuracy: f64,
    /// Macro-F1.
    pub macro_f1: f64,
    /// Log loss.
    pub log_loss: f64,
    /// Images scored. Face models: every image of the bundle's classes, whatever its outcome (an
    /// image answered `unknown` or `no_face`, or that could not be read, counts as wrong).
    pub n: usize,
    /// The same as `n` (the name `fit` reports it under).
    pub n_val: usize,
    /// Face models: images of the bundle's classes answered `unknown`, scored as wrong.
    pub unknown: usize,
    /// Face models: images with several faces labelled by the face that matches a known class.
    pub resolved: usize,
    /// The bundle's classes.
    pub classes: Vec<String>,
    /// Confusion matrix, rows = true class.
    pub confusion: Vec<Vec<usize>>,
    /// The full report.
    pub report: Report,
    /// Which way the errors lean.
    pub bias: String,
    /// Images left out because the bundle was trained on them (same content, wherever they are).
    pub excluded_training_images: usize,
    /// Images of classes the bundle does not know (strangers for face models; ignored otherwise).
    pub unknown_classes: Vec<String>,
    /// Face models: how the "unknown" threshold does (known faces rejected, strangers accepted).
    pub open_set: Option<OpenSetEvaluation>,
    /// Images that could not be read or decoded.
    pub skipped: Vec<Skipped>,
    /// Face models: images of the bundle's classes without a face (scored as wrong), with the
    /// reason.
    pub no_face: Vec<Skipped>,
    /// Images with several faces of similar size that could not be scored (whole-image bundles
    /// never have any; face bundles score every image, so this stays empty).
    pub ambiguous: Vec<Skipped>,
    /// Images that went through the backbone in this run.
    pub backbone_runs: u64,
}

/// Scores a bundle on labelled images, leaving out those it was trained on. Classes the bundle
/// does not know are strangers: face models report how many the open set accepts.
pub fn evaluate_bundle(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    bundle: &Bundle,
    dataset: &Dataset,
    extract_opts: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<EvalReport> {
    let kind = pipeline.model.manifest.kind();
    let trained: std::collections::HashSet<&str> =
        bundle.train_sha256.iter().map(String::as_str).collect();
    let all: Vec<PathBuf> = dataset.samples.iter().map(|s| s.path.clone()).collect();
    let keys = crate::cache::content_keys(cache, &all);
    let mut excluded = 0;
    let mut chosen = Vec::new();
    for (s, key) in dataset.samples.iter().zip(&keys) {
        if key.as_deref().is_some_and(|k| trained.contains(k)) {
            excluded += 1;
        } else {
            chosen.push(s);
        }
    }
    if chosen.is_empty() {
        return Err(Error::config(
            format!("every image in {} was used to train this bundle", dataset.root.display()),
            Some("evaluate on images the bundle has not seen (the fit's validation images already are in its report)".into()),
        ));
    }
    let paths: Vec<PathBuf> = chosen.iter().map(|s| s.path.clone()).collect();
    let extracted = extract(pipeline, cache, &paths, extract_opts, reporter)?;
    let class_of = |name: &str| bundle.classes.iter().position(|c| c == name);
    let mut unknown_classes: Vec<String> = dataset
        .classes
        .iter()
        .filter(|c| class_of(c).is_none())
        .cloned()
        .collect();
    unknown_classes.sort();
    let (mut known_x, mut known_y, mut strangers) = (Vec::new(), Vec::new(), Vec::new());
    let (mut no_face, mut ambiguous) = (Vec::new(), Vec::new());
    let (mut unknown, mut resolved) = (0, 0);
    let report = if kind == ModelKind::Face {
        let labeller = crate::label::Labeller {
            head: &bundle.head,
            open_set: bundle.open_set.as_ref(),
        };
        let mut scored = Vec::new();
        for (s, emb) in chosen.iter().zip(&extracted.embeddings) {
            match class_of(&dataset.classes[s.class]) {
                Some(c) => scored.push((c, s.path.as_path(), emb.as_ref())),
                None => {
                    // A stranger: the face most like a known person stands for the image.
                    let Some(emb) = emb else { continue };
                    let (faces, label) = labeller.label(emb)?;
                    if let Some(f) = crate::label::representative_face(&faces, &label) {
                        strangers.push(emb[f].vector.clone());
                    }
                }
            }
        }
        if scored.is_empty() {
            return Err(no_known(bundle, dataset));
        }
        let f = crate::fit::score_images(&labeller, &scored, &bundle.classes)?;
        unknown = f.unknown;
        resolved = f.multi_face_labelled;
        no_face = f.no_face;
        known_x = f.known_vectors;
        f.report
    } else {
        // Images of a known class that could not be read: listed under `skipped`, and wrong.
        let mut unread_y = Vec::new();
        for (s, emb) in chosen.iter().zip(&extracted.embeddings) {
            let Some(emb) = emb else {
                unread_y.extend(class_of(&dataset.classes[s.class]));
                continue;
            };
            let v = match training_vector(kind, emb) {
                Use::Vector(v) => v,
                Use::NoFace => {
                    no_face.push(Skipped {
                        path: s.path.clone(),
                        reason: "no face found".into(),
                    });
                    continue;
                }
                Use::Ambiguous(reason) => {
                    ambiguous.push(Skipped {
                        path: s.path.clone(),
                        reason,
                    });
                    continue;
                }
            };
            match class_of(&dataset.classes[s.class]) {
                Some(c) => {
                    known_x.push(v);
                    known_y.push(c);
                }
                None => strangers.push(v),
            }
        }
        if known_x.is_empty() && unread_y.is_empty() {
            return Err(no_known(bundle, dataset));
        }
        let k = bundle.classes.len();
        let proba = if known_x.is_empty() {
            Array2::zeros((0, k))
        } else {
            let d = known_x[0].len();
            let x = Array2::from_shape_vec((known_x.len(), d), known_x.concat())
                .expect("rows of equal length");
            bundle.head.try_predict_proba(x.view())?
        };
        if unread_y.is_empty() {
            crate::metrics::evaluate(&known_y, proba.view(), &bundle.classes)?
        } else {
            let mut y_pred: Vec<Option<usize>> = proba
                .rows()
                .into_iter()
                .map(|r| (0..k).reduce(|b, c| if r[c] > r[b] { c } else { b }))
                .collect();
            let mut rows: Vec<f32> = proba.iter().copied().collect();
            let mut y_true = known_y.clone();
            for &c in &unread_y {
                y_true.push(c);
                y_pred.push(None);
                rows.extend(std::iter::repeat_n(1.0 / k as f32, k));
            }
            let all = Array2::from_shape_vec((y_true.len(), k), rows).expect("k per image");
            crate::metrics::evaluate_predictions(&y_true, &y_pred, all.view(), &bundle.classes)?
        }
    };
    let open_set = bundle
        .open_set
        .as_ref()
        .map(|set| set.evaluate(&known_x, &strangers));
    Ok(EvalReport {
        model: pipeline.model.manifest.name.clone(),
        accuracy: report.accuracy,
        macro_f1: report.macro_f1,
        log_loss: report.log_loss,
        n: report.n,
        n_val: report.n,
        unknown,
        resolved,
        classes: bundle.classes.clone(),
        confusion: report.confusion.clone(),
        bias: report.bias_sentence(),
        report,
        excluded_training_images: excluded,
        unknown_classes,
        open_set,
        skipped: extracted.report.skipped,
        no_face,
        ambiguous,
        backbone_runs: extracted.report.backbone_runs,
    })
}

fn no_known(bundle: &Bundle, dataset: &Dataset) -> Error {
    Error::config(
        format!(
            "no usable image of the bundle's classes ({}) in {}",
            bundle.classes.join(", "),
            dataset.root.display()
        ),
        Some("class folder names must match the class names the bundle was trained with".into()),
    )
}

//! The fit report (`qcyn fit --json`) and its text for people.
use std::path::PathBuf;

use serde::Serialize;

use crate::dataset::Skipped;
use crate::face::openset::OpenSetEvaluation;
use crate::head::{ClassWeight, CvReport};
use crate::metrics::Report;

/// What `qcyn fit` reports (its `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// Model name.
    pub model: String,
    /// The accuracy to expect on photos never seen (`null` without validation images): the
    /// held-out part's, or, when it holds fewer than
    /// [`crate::estimate::MIN_HELD_OUT_PHOTOS`] distinct photos, the grouped cross-validated
    /// [`FitReport::estimate`]'s ([`FitReport::accuracy_from`] says which).
    pub accuracy: Option<f64>,
    /// Macro-F1, from the same source as `accuracy`.
    pub macro_f1: Option<f64>,
    /// Log loss, from the same source as `accuracy`.
    pub log_loss: Option<f64>,
    /// Where `accuracy` comes from: `"held_out"` (the validation part), `"grouped_cv"` (the
    /// estimate) or `"none"`.
    pub accuracy_from: &'static str,
    /// The validation part's own accuracy (`null` without validation images).
    pub held_out_accuracy: Option<f64>,
    /// The grouped cross-validated estimate, when the held-out part is too few distinct photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<crate::estimate::Estimate>,
    /// Images (or faces) trained on.
    pub n_train: usize,
    /// Images validated on. Face models: every validation image, whatever its outcome (an image
    /// answered `unknown` or `no_face`, or that could not be read, counts as wrong).
    pub n_val: usize,
    /// Images held out for a final test (not touched by fit).
    pub n_test: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Images that went through the backbone in this run (0 when all features were cached);
    /// with `--unfreeze`, the frozen prefix's runs for the maps too.
    pub backbone_runs: u64,
    /// Blocks fine-tuned (`--unfreeze N`; 0: the frozen backbone).
    pub unfreeze: usize,
    /// `--unfreeze`: epochs trained (the last possibly partly).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs_run: Option<usize>,
    /// `--unfreeze`: the epoch whose weights were kept (0: the pretrained tail stayed best on the
    /// early-stopping part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// `--unfreeze`: seconds spent fine-tuning (evaluations included; maps and head excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
    /// `--unfreeze`: the whole fine-tuning report (history, throughput, stop reason, settings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fine_tuning: Option<crate::unfreeze::UnfreezeReport>,
    /// Validation (held-out part) confusion matrix, rows = true class.
    pub confusion: Vec<Vec<usize>>,
    /// The full validation report (per-class metrics, bias).
    pub validation: Option<Report>,
    /// Which way the validation errors lean, in one sentence.
    pub bias: Option<String>,
    /// The L2 strength chosen by cross-validation on the training part.
    pub chosen_l2: f32,
    /// The cross-validation report.
    pub cv: Option<CvReport>,
    /// Images that could not be read or decoded.
    pub skipped: Vec<Skipped>,
    /// Face models: images in which no face was found (training images: not trained on;
    /// validation images: scored as wrong), with the reason.
    pub no_face: Vec<Skipped>,
    /// Face models: training images in which two faces match the class equally and look like two
    /// different people (not trained on).
    pub ambiguous: Vec<Skipped>,
    /// Face models: training images in which no face looks like the class's other photos (not
    /// trained on), with the reason.
    pub unmatched: Vec<Skipped>,
    /// Face models: validation images answered `unknown` (every face a stranger), scored as
    /// wrong.
    pub unknown: usize,
    /// Face models: training images with several faces whose face(s) were chosen by identity
    /// (the faces that look like the class's other photos).
    pub resolved: usize,
    /// Face models: the open-set ("unknown") threshold and how it does on validation faces.
    pub open_set: Option<OpenSetSummary>,
    /// When the training classes are imbalanced (largest / smallest count above
    /// [`IMBALANCE_RATIO`]) and there are validation images: class weights none vs balanced,
    /// both fitted on the same split. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_weight_comparison: Option<ClassWeightComparison>,
    /// Seconds spent extracting features.
    pub extract_seconds: f64,
    /// Seconds spent fitting the head (cross-validation included).
    pub fit_seconds: f64,
    /// Where the bundle was written.
    pub bundle: PathBuf,
    /// Whether the split kept near-duplicates together.
    pub grouping: bool,
    /// Near-duplicate groups (of 2 or more) the split kept on one side.
    pub groups_kept_together: usize,
    /// Groups spanning classes: likely labelling errors, kept in training.
    pub cross_class: Vec<Vec<PathBuf>>,
    /// Where grouping changed a held-out count.
    pub split_notes: Vec<String>,
    /// Every validation image the head answered, with its true class, label and probabilities
    /// (what `qcyn report` picks the worst errors from). Reports written before this field
    /// existed lack it; `qcyn report` then says so.
    pub validation_images: Vec<ValidationImage>,
}

/// One validation image's answer (see [`FitReport::validation_images`]).
#[derive(Debug, Clone, Serialize)]
pub struct ValidationImage {
    /// The image, made absolute when the fit was given a relative folder.
    #[serde(serialize_with = "crate::dataset::lossy_path")]
    pub path: PathBuf,
    /// Its class.
    pub true_class: String,
    /// The label given: a class, or for face models `unknown` or `no_face`; `null` when the image
    /// could not be read.
    pub predicted: Option<String>,
    /// Every class's probability, in the bundle's class order.
    pub probabilities: Vec<f32>,
    /// Face models: `[x, y, w, h]` of the face that gave the label, in image pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<[f32; 4]>,
}

impl ValidationImage {
    pub(crate) fn new(
        path: &std::path::Path,
        classes: &[String],
        class: usize,
        predicted: Option<String>,
        probabilities: &[f32],
        face: Option<[f32; 4]>,
    ) -> ValidationImage {
        ValidationImage {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            true_class: classes[class].clone(),
            predicted,
            probabilities: probabilities.to_vec(),
            face,
        }
    }
}

/// Training classes whose largest / smallest count is above this are imbalanced: the fit report
/// then compares class weights none and balanced.
pub const IMBALANCE_RATIO: f64 = 1.5;

/// A class and its number of training images.
#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    /// Class name.
    pub class: String,
    /// Training images (or faces).
    pub count: usize,
}

/// Validation scores of one class weighting.
#[derive(Debug, Clone, Serialize)]
pub struct WeightingScores {
    /// Validation accuracy.
    pub accuracy: f64,
    /// Validation macro-F1.
    pub macro_f1: f64,
    /// The lowest recall of any class.
    pub lowest_recall: f64,
    /// The L2 strength cross-validation chose with this weighting.
    pub chosen_l2: f32,
}

/// Class weights none vs balanced on the same split (see [`FitReport::class_weight_comparison`]).
#[derive(Debug, Clone, Serialize)]
pub struct ClassWeightComparison {
    /// Largest / smallest training count.
    pub imbalance: f64,
    /// The largest class.
    pub largest: ClassCount,
    /// The smallest class.
    pub smallest: ClassCount,
    /// Every image counts once.
    pub none: WeightingScores,
    /// Every class weighs the same in total.
    pub balanced: WeightingScores,
    /// The weighting this fit used (and wrote into the bundle).
    pub used: ClassWeight,
    /// qcyn's default weighting (`--class-weight`).
    pub default: ClassWeight,
}

/// The open-set threshold of a face bundle, and how it does on validation faces.
#[derive(Debug, Clone, Serialize)]
pub struct OpenSetSummary {
    /// Cosine similarity below which a face is `unknown`.
    pub threshold: f32,
    /// False-reject rate it was calibrated for (cross-validated on training faces).
    pub false_reject_rate: f32,
    /// Validation faces of known people that it rejects.
    pub validation: Option<OpenSetEvaluation>,
}

/// The human-readable report of a fit.
pub fn human(r: &FitReport) -> String {
    let mut s = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "model {}: {} classes, {} trained on, {} validated on{}",
        r.model,
        r.classes.len(),
        r.n_train,
        r.n_val,
        if r.n_test > 0 {
            format!(", {} held out for test", r.n_test)
        } else {
            String::new()
        }
    );
    if r.grouping {
        let _ = writeln!(
            s,
            "split: {} group(s) of near-duplicates kept on one side",
            r.groups_kept_together
        );
    }
    for note in &r.split_notes {
        let _ = writeln!(s, "note: {note}");
    }
    if let Some(f) = &r.fine_tuning {
        let o = &f.outcome;
        let _ = writeln!(
            s,
            "fine-tuned the last {} block(s): {} epoch(s), {} steps, {:.1} s ({:.0} maps/s); kept epoch {} ({}); {}; early stopping on {} of the training images",
            f.blocks,
            o.epochs_run,
            o.steps,
            o.train_seconds,
            o.samples_per_s,
            o.best_epoch,
            if o.best_epoch == 0 { "the pretrained tail stayed best" } else { "the best on the early-stopping part" },
            o.stop_reason,
            o.inner_val
        );
        if let (Some(frozen), Some(acc)) = (f.frozen_held_out_accuracy, r.held_out_accuracy) {
            let _ = writeln!(
                s,
                "held-out accuracy: fine-tuned {acc:.3}, frozen backbone's head on the same split {frozen:.3}"
            );
        }
    }
    for g in &r.cross_class {
        let paths: Vec<String> = g.iter().map(|p| p.display().to_string()).collect();
        let _ = writeln!(
            s,
            "likely label error, near-duplicates across classes: {}",
            paths.join(", ")
        );
    }
    if let Some(cv) = &r.cv {
        let _ = writeln!(
            s,
            "L2 strength {}, feature scaling `{}`{} chosen by {}-fold cross-validation on the training part (out-of-fold accuracy {:.3})",
            r.chosen_l2,
            cv.scaling.name(),
            if cv.part_weights.is_empty() {
                String::new()
            } else {
                format!(", part weights {:?}", cv.part_weights)
            },
            cv.folds,
            cv.grid.iter().find(|p| p.l2 == r.chosen_l2).map_or(f64::NAN, |p| p.accuracy)
        );
        for note in &cv.notes {
            let _ = writeln!(s, "note: {note}");
        }
    }
    if let Some(e) = &r.estimate {
        let _ = writeln!(s, "\n{}", e.human(r.held_out_accuracy));
    }
    match &r.validation {
        Some(v) => {
            let _ = writeln!(s, "\nvalidation (the held-out part):\n{}", v.human());
        }
        None => {
            let _ = writeln!(s, "no validation images: accuracy is not measured");
        }
    }
    if let Some(c) = &r.class_weight_comparison {
        let name = |w: ClassWeight| match w {
            ClassWeight::None => "none",
            ClassWeight::Balanced => "balanced",
        };
        let _ = writeln!(
            s,
            "classes are imbalanced ({:.1}×: `{}` {} vs `{}` {} training images); on the same split:",
            c.imbalance, c.largest.class, c.largest.count, c.smallest.class, c.smallest.count
        );
        for (w, x) in [
            (ClassWeight::None, &c.none),
            (ClassWeight::Balanced, &c.balanced),
        ] {
            let _ =
                writeln!(
                s,
                "  class weights {:<8}  accuracy {:.3}  macro-F1 {:.3}  lowest recall {:.3}{}{}",
                name(w),
                x.accuracy,
                x.macro_f1,
                x.lowest_recall,
                if w == c.used { "  (used)" } else { "" },
                if w == c.default { "  (the default)" } else { "" }
            );
        }
    }
    if let Some(o) = &r.open_set {
        let _ = write!(
            s,
            "unknown-face threshold: cosine {:.3} (calibrated for {:.1}% false rejects)",
            o.threshold,
            o.false_reject_rate * 100.0
        );
        if let Some(v) = &o.validation {
            let _ = write!(
                s,
                "; rejects {:.1}% of {} validation faces",
                v.false_reject_rate * 100.0,
                v.knowns
            );
        }
        let _ = writeln!(s);
    }
    if r.unknown > 0 {
        let _ = writeln!(
            s,
            "{} validation image(s) answered `unknown` (every face a stranger), counted as wrong",
            r.unknown
        );
    }
    if r.resolved > 0 {
        let _ = writeln!(
            s,
            "{} training image(s) with several faces: the face(s) chosen by identity (those that look like the class's other photos)",
            r.resolved
        );
    }
    for p in &r.no_face {
        let _ = writeln!(s, "no face: {}: {}", p.path.display(), p.reason);
    }
    for a in &r.ambiguous {
        let _ = writeln!(s, "ambiguous: {}: {}", a.path.display(), a.reason);
    }
    for a in &r.unmatched {
        let _ = writeln!(
            s,
            "not the class's person: {}: {}",
            a.path.display(),
            a.reason
        );
    }
    for k in &r.skipped {
        let _ = writeln!(s, "skipped {}: {}", k.path.display(), k.reason);
    }
    let _ = writeln!(
        s,
        "features: {} backbone runs, {:.2} s; head: {:.2} s; bundle: {}",
        r.backbone_runs,
        r.extract_seconds,
        r.fit_seconds,
        r.bundle.display()
    );
    s
}

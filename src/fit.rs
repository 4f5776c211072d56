//! Fit: the `qcyn fit` workflow. Features of the split's images come through the cache (the
//! backbone runs only on what is missing), the head is fitted on the training part, the
//! validation part is scored, and everything needed to predict is written as one bundle.
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;
use serde::Serialize;

use crate::atomic::write_atomic;
use crate::bundle::{bundle_path, Bundle, SplitSource, TrainingConfig, BUNDLE_FILE};
use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::{Error, Result};
use crate::extract::{extract, ExtractOptions};
use crate::face::openset::{Calibration, OpenSet, OpenSetEvaluation};
use crate::face::{choose_training_face, FaceChoice};
use crate::features::Embedding;
use crate::head::{ClassWeight, CvReport, SoftmaxValidParams};
use crate::metrics::Report;
use crate::models::ModelKind;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;
use crate::split::manifest::SplitManifest;
use crate::split::{Split, SplitSpec};

/// Labelled images and how they are split.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// The images.
    pub dataset: Dataset,
    /// Which are trained on, validated on, tested on.
    pub split: Split,
    /// Where the split came from.
    pub source: SplitSource,
    /// The near-duplicate groups (of 2 or more, sample indices) the split keeps on one side;
    /// `None` when the split was made without grouping.
    pub groups: Option<Vec<Vec<usize>>>,
    /// The groups spanning classes (likely labelling errors), kept in training.
    pub cross_class: Vec<Vec<usize>>,
    /// Where grouping changed a held-out count, for people.
    pub split_notes: Vec<String>,
}

impl TrainingData {
    /// The tutorial's list files in `dir` (paths relative to `base`, default `dir`), with the
    /// split they describe.
    pub fn from_lists(dir: &Path, base: Option<&Path>) -> Result<TrainingData> {
        let read = crate::split::lists::read(dir, base)?;
        let base = read.dataset.root.clone();
        Ok(TrainingData {
            dataset: read.dataset,
            split: read.split,
            source: SplitSource::Lists {
                dir: dir.to_path_buf(),
                base,
            },
            groups: None,
            cross_class: Vec::new(),
            split_notes: Vec::new(),
        })
    }

    /// A scanned dataset split as a manifest recorded. Images added since the manifest was made
    /// are in no part, and listed as skipped with the fix.
    pub fn from_manifest(mut dataset: Dataset, file: &Path) -> Result<TrainingData> {
        let manifest = SplitManifest::read(file)?;
        let resolved = manifest.resolve(&dataset)?;
        for &i in &resolved.unlisted {
            dataset.skipped.push(Skipped {
                path: dataset.samples[i].path.clone(),
                reason: format!(
                    "not in the split manifest {} (added after it was made); re-run `qcyn split` to use it",
                    file.display()
                ),
            });
        }
        let groups = manifest.group_indices(&dataset);
        Ok(TrainingData {
            dataset,
            split: resolved.split,
            source: SplitSource::Manifest {
                path: file.to_path_buf(),
            },
            groups,
            cross_class: Vec::new(),
            split_notes: Vec::new(),
        })
    }

    /// A scanned dataset split by rule and seed, without grouping (`--no-group`).
    pub fn from_rule(dataset: Dataset, spec: SplitSpec) -> Result<TrainingData> {
        let split = crate::split::stratified(&dataset, &spec)?;
        Ok(TrainingData {
            dataset,
            split,
            source: SplitSource::Rule {
                spec,
                manifest: None,
            },
            groups: None,
            cross_class: Vec::new(),
            split_notes: Vec::new(),
        })
    }

    /// A scanned dataset split by rule and seed, every near-duplicate group (of `groups`, sample
    /// indices, e.g. [`crate::dups::Dups::groups`]) kept on one side: [`crate::split::grouped`].
    pub fn from_rule_grouped(
        dataset: Dataset,
        spec: SplitSpec,
        groups: &[Vec<usize>],
    ) -> Result<TrainingData> {
        let g = crate::split::grouped(&dataset, &spec, groups)?;
        Ok(TrainingData {
            dataset,
            split: g.split,
            source: SplitSource::Rule {
                spec,
                manifest: None,
            },
            groups: Some(g.groups),
            cross_class: g.cross_class,
            split_notes: g.notes,
        })
    }
}

/// How to fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Head hyperparameters (validated).
    pub params: SoftmaxValidParams,
    /// Extraction settings.
    pub extract: ExtractOptions,
    /// Face models: share of known faces the "unknown" threshold may reject.
    pub false_reject_rate: f32,
    /// Face models: the pipeline's options (recorded in the bundle so prediction matches).
    pub face: crate::face::FaceOptions,
}

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
    /// Images (or faces) validated on.
    pub n_val: usize,
    /// Images held out for a final test (not touched by fit).
    pub n_test: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Images that went through the backbone in this run (0 when all features were cached).
    pub backbone_runs: u64,
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
    /// Face models: images in which no face was found (not trained or validated on).
    pub no_face: Vec<PathBuf>,
    /// Face models: images with several faces of similar size (not trained or validated on).
    pub ambiguous: Vec<Skipped>,
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

/// The vector an image contributes to training, validation or evaluation, per its embeddings:
/// whole-image models give their one vector; face models the face [`choose_training_face`] picks.
pub(crate) enum Use {
    /// Use this vector.
    Vector(Vec<f32>),
    /// The image has no face.
    NoFace,
    /// Several faces of similar size: which person the image is of is unclear (the reason).
    Ambiguous(String),
}

pub(crate) fn training_vector(kind: ModelKind, embeddings: &[Embedding]) -> Use {
    match kind {
        ModelKind::Whole | ModelKind::Fusion => match embeddings.first() {
            Some(e) => Use::Vector(e.vector.clone()),
            None => Use::NoFace,
        },
        ModelKind::Face => match choose_training_face(embeddings) {
            FaceChoice::Face(i) => Use::Vector(embeddings[i].vector.clone()),
            FaceChoice::NoFace => Use::NoFace,
            FaceChoice::Ambiguous { area_ratio, .. } => Use::Ambiguous(format!(
                "{} faces, the second {:.0}% the size of the first: which person the photo is of is unclear; crop it to one face",
                embeddings.len(),
                area_ratio * 100.0
            )),
        },
    }
}

/// Runs the whole fit workflow and writes the bundle (and `report.json`, `report.txt`,
/// `split.json` when `out` is a folder).
pub fn fit(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    data: &TrainingData,
    opts: &FitOptions,
    out: &Path,
    reporter: &dyn Reporter,
) -> Result<(Bundle, FitReport)> {
    let kind = pipeline.model.manifest.kind();
    let ds = &data.dataset;
    let wanted: Vec<usize> = data
        .split
        .train
        .iter()
        .chain(&data.split.val)
        .copied()
        .collect();
    let paths: Vec<PathBuf> = wanted.iter().map(|&i| ds.samples[i].path.clone()).collect();
    let extracted = extract(pipeline, cache, &paths, opts.extract, reporter)?;

    let mut no_face = Vec::new();
    let mut ambiguous = Vec::new();
    let mut rows: [(Vec<Vec<f32>>, Vec<usize>); 2] = Default::default();
    // Each row's near-duplicate unit, when the split kept groups together.
    let units = data
        .groups
        .as_ref()
        .map(|g| crate::estimate::units(ds.samples.len(), g));
    let mut row_units: [Vec<usize>; 2] = Default::default();
    for (k, &i) in wanted.iter().enumerate() {
        let part = usize::from(k >= data.split.train.len());
        let Some(embeddings) = &extracted.embeddings[k] else {
            continue;
        };
        match training_vector(kind, embeddings) {
            Use::Vector(v) => {
                rows[part].0.push(v);
                rows[part].1.push(ds.samples[i].class);
                row_units[part].push(units.as_ref().map_or(i, |u| u[i]));
            }
            Use::NoFace => no_face.push(ds.samples[i].path.clone()),
            Use::Ambiguous(reason) => ambiguous.push(Skipped {
                path: ds.samples[i].path.clone(),
                reason,
            }),
        }
    }
    let [(train_x, train_y), (val_x, val_y)] = rows;
    let mut counts = vec![0usize; ds.classes.len()];
    for &c in &train_y {
        counts[c] += 1;
    }
    if ds.classes.len() < 2 {
        return Err(Error::config(
            format!(
                "only one class (`{}`) in {}: a classifier needs at least two",
                ds.classes.first().map_or("", String::as_str),
                ds.root.display()
            ),
            Some("add a folder of images for each other category".into()),
        ));
    }
    // A class the head cannot learn, or cannot cross-validate, is named with why it is short.
    let lost_per_class = |c: usize| {
        let paths: std::collections::HashSet<&Path> = no_face
            .iter()
            .map(PathBuf::as_path)
            .chain(ambiguous.iter().map(|a| a.path.as_path()))
            .collect();
        data.split
            .train
            .iter()
            .filter(|&&i| ds.samples[i].class == c && paths.contains(ds.samples[i].path.as_path()))
            .count()
    };
    let needed = if opts.params.l2_grid().len() > 1 {
        2
    } else {
        1
    };
    let short: Vec<String> = (0..ds.classes.len())
        .filter(|&c| counts[c] < needed)
        .map(|c| {
            let lost = lost_per_class(c);
            let why = if lost > 0 {
                format!(", {lost} more without a usable face")
            } else {
                String::new()
            };
            format!(
                "`{}` has {} usable training image(s){why}",
                ds.classes[c], counts[c]
            )
        })
        .collect();
    if !short.is_empty() {
        let hint = if counts.iter().all(|&n| n >= 1) {
            "add images to it, hold out fewer for validation, or pass one --l2 value (e.g. --l2 1) to skip cross-validation"
        } else if kind == ModelKind::Face {
            "add photos where that person's face is clearly visible (see `qcyn faces`), or use --no-face whole"
        } else {
            "add images to that class, or remove its folder"
        };
        return Err(Error::config(
            format!(
                "{}; choosing the regularisation by cross-validation needs at least {needed} per class",
                short.join("; ")
            ),
            Some(hint.into()),
        ));
    }

    let to_matrix = |x: &[Vec<f32>]| -> Array2<f32> {
        let d = x.first().map_or(0, |v| v.len());
        Array2::from_shape_vec((x.len(), d), x.concat()).expect("rows of equal length")
    };
    let start = Instant::now();
    reporter.message(&format!(
        "fitting the head on {} training vectors",
        train_x.len()
    ));
    // A fused model: each part's weight is chosen with the L2 strength, by cross-validation.
    let params = match kind {
        ModelKind::Fusion => opts.params.with_part_dims(
            pipeline
                .model
                .parts
                .iter()
                .filter_map(|p| p.manifest.whole().map(|w| w.output.dim))
                .collect(),
        ),
        _ => opts.params.clone(),
    };
    let train_units = units.is_some().then_some(row_units[0].as_slice());
    let fitted =
        crate::head::fit_grouped(to_matrix(&train_x).view(), &train_y, train_units, &params)?;
    // Too few distinct photos held out to measure on: every photo held out once instead.
    let estimate = match (kind, units.is_some()) {
        (ModelKind::Whole | ModelKind::Fusion, true) => {
            let rows = |p: usize| crate::estimate::Rows {
                x: if p == 0 { &train_x } else { &val_x },
                y: if p == 0 { &train_y } else { &val_y },
                units: &row_units[p],
            };
            crate::estimate::when_held_out_is_small(
                rows(0),
                rows(1),
                &ds.classes,
                &params,
                fitted.head.l2,
            )?
        }
        _ => None,
    };
    let fit_seconds = start.elapsed().as_secs_f64();

    let validation = if val_x.is_empty() {
        None
    } else {
        let proba = fitted.head.predict_proba(to_matrix(&val_x).view());
        Some(crate::metrics::evaluate(&val_y, proba.view(), &ds.classes)?)
    };

    // Imbalanced classes: the other weighting, fitted on the same split, for comparison.
    let (largest, smallest) = (
        (0..counts.len()).max_by_key(|&c| (counts[c], std::cmp::Reverse(c))),
        (0..counts.len()).min_by_key(|&c| counts[c]),
    );
    let class_weight_comparison = match (&validation, largest, smallest) {
        (Some(v), Some(big), Some(small))
            if counts[big] as f64 > IMBALANCE_RATIO * counts[small] as f64 =>
        {
            let used = opts.params.class_weight();
            let other = match used {
                ClassWeight::None => ClassWeight::Balanced,
                ClassWeight::Balanced => ClassWeight::None,
            };
            reporter.message(&format!(
                "classes are imbalanced ({} to {}): fitting with class weights {} too, for comparison",
                counts[big],
                counts[small],
                serde_json::to_value(other).expect("serialisable").as_str().unwrap_or("")
            ));
            let refit = crate::head::fit_grouped(
                to_matrix(&train_x).view(),
                &train_y,
                train_units,
                &params.with_class_weight(other),
            )?;
            let proba = refit.head.predict_proba(to_matrix(&val_x).view());
            let o = crate::metrics::evaluate(&val_y, proba.view(), &ds.classes)?;
            let scores = |r: &Report, l2: f32| WeightingScores {
                accuracy: r.accuracy,
                macro_f1: r.macro_f1,
                lowest_recall: r.bias.lowest_recall.as_ref().map_or(0.0, |c| c.recall),
                chosen_l2: l2,
            };
            let (mine, theirs) = (scores(v, fitted.head.l2), scores(&o, refit.head.l2));
            let (none, balanced) = match used {
                ClassWeight::None => (mine, theirs),
                ClassWeight::Balanced => (theirs, mine),
            };
            let named = |c: usize| ClassCount {
                class: ds.classes[c].clone(),
                count: counts[c],
            };
            Some(ClassWeightComparison {
                imbalance: counts[big] as f64 / counts[small].max(1) as f64,
                largest: named(big),
                smallest: named(small),
                none,
                balanced,
                used,
                default: ClassWeight::default(),
            })
        }
        _ => None,
    };

    let mut open_set = None;
    let mut summary = None;
    if kind == ModelKind::Face {
        let cal = Calibration {
            false_reject_rate: opts.false_reject_rate,
            folds: 5,
            seed: opts.params.seed(),
        };
        let set = OpenSet::calibrate(&train_x, &train_y, ds.classes.len(), &cal)?;
        summary = Some(OpenSetSummary {
            threshold: set.threshold,
            false_reject_rate: set.false_reject_rate,
            validation: (!val_x.is_empty()).then(|| set.evaluate(&val_x, &[])),
        });
        open_set = Some(set);
    }

    let training = TrainingConfig {
        split: data.source.clone(),
        dataset_root: ds.root.clone(),
        train_counts: counts,
        class_weight: opts.params.class_weight(),
        params: opts.params.clone(),
        cv: fitted.cv.clone(),
        refit: fitted.refit,
    };
    let mut bundle = Bundle::new(
        &pipeline.model,
        pipeline.identity.sha256.clone(),
        ds.classes.clone(),
        fitted.head.clone(),
        training,
        validation.clone(),
    );
    bundle.open_set = open_set;
    bundle.face_options = (kind == ModelKind::Face).then_some(opts.face);
    let train_paths: Vec<PathBuf> = data
        .split
        .train
        .iter()
        .map(|&i| ds.samples[i].path.clone())
        .collect();
    bundle.train_sha256 = crate::cache::content_keys(cache, &train_paths)
        .into_iter()
        .flatten()
        .collect();

    let file = bundle_path(out);
    let report = FitReport {
        model: pipeline.model.manifest.name.clone(),
        accuracy: estimate
            .as_ref()
            .map(|e| e.accuracy)
            .or(validation.as_ref().map(|r| r.accuracy)),
        macro_f1: estimate
            .as_ref()
            .map(|e| e.macro_f1)
            .or(validation.as_ref().map(|r| r.macro_f1)),
        log_loss: estimate
            .as_ref()
            .map(|e| e.report.log_loss)
            .or(validation.as_ref().map(|r| r.log_loss)),
        accuracy_from: match (&estimate, &validation) {
            (Some(_), _) => "grouped_cv",
            (None, Some(_)) => "held_out",
            (None, None) => "none",
        },
        held_out_accuracy: validation.as_ref().map(|r| r.accuracy),
        estimate,
        n_train: train_x.len(),
        n_val: val_x.len(),
        n_test: data.split.test.len(),
        classes: ds.classes.clone(),
        backbone_runs: extracted.report.backbone_runs,
        confusion: validation
            .as_ref()
            .map(|r| r.confusion.clone())
            .unwrap_or_default(),
        bias: validation.as_ref().map(|r| r.bias_sentence()),
        validation,
        chosen_l2: fitted.head.l2,
        cv: fitted.cv,
        skipped: {
            let mut all = extracted.report.skipped.clone();
            all.extend(ds.skipped.iter().cloned());
            all.sort_by(|a, b| a.path.cmp(&b.path));
            all
        },
        no_face,
        ambiguous,
        open_set: summary,
        class_weight_comparison,
        extract_seconds: extracted.report.seconds,
        fit_seconds,
        bundle: file.clone(),
        grouping: data.groups.is_some(),
        groups_kept_together: data.groups.as_ref().map_or(0, Vec::len),
        cross_class: data
            .cross_class
            .iter()
            .map(|g| g.iter().map(|&i| ds.samples[i].path.clone()).collect())
            .collect(),
        split_notes: data.split_notes.clone(),
    };

    // The bundle goes last, so a failure before it leaves no bundle that lacks its reports.
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    let stem = if file.file_name().is_some_and(|n| n == BUNDLE_FILE) {
        String::new()
    } else {
        format!(
            "{}.",
            file.file_stem().unwrap_or_default().to_string_lossy()
        )
    };
    let json = serde_json::to_vec_pretty(&report).expect("serialisable report");
    write_atomic(&dir.join(format!("{stem}report.json")), &json)?;
    write_atomic(
        &dir.join(format!("{stem}report.txt")),
        human(&report).as_bytes(),
    )?;
    let manifest = SplitManifest::new(
        ds,
        &data.split,
        match &data.source {
            SplitSource::Rule { spec, .. } => Some(spec),
            _ => None,
        },
    )?;
    let manifest = match &data.groups {
        Some(groups) => manifest.with_groups(ds, groups)?,
        None => manifest,
    };
    manifest.write(&dir.join(format!("{stem}split.json")))?;
    bundle.write(&file)?;
    Ok((bundle, report))
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
            "L2 strength {} chosen by {}-fold cross-validation on the training part (out-of-fold accuracy {:.3})",
            r.chosen_l2,
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
    for p in &r.no_face {
        let _ = writeln!(s, "no face: {}", p.display());
    }
    for a in &r.ambiguous {
        let _ = writeln!(s, "ambiguous: {}: {}", a.path.display(), a.reason);
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

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
use crate::face::identity::{IdentityChoice, NO_FACE_HINT};
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
    /// Validation accuracy (`null` without validation images).
    pub accuracy: Option<f64>,
    /// Validation macro-F1.
    pub macro_f1: Option<f64>,
    /// Validation log loss.
    pub log_loss: Option<f64>,
    /// Images (or faces) trained on.
    pub n_train: usize,
    /// Images validated on. Face models: every validation image, whatever its outcome (an image
    /// answered `unknown` or `no_face`, or that could not be read, counts as wrong).
    pub n_val: usize,
    /// Images held out for a final test (not touched by fit).
    pub n_test: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Images that went through the backbone in this run (0 when all features were cached).
    pub backbone_runs: u64,
    /// Validation confusion matrix, rows = true class.
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

/// Face-model validation or evaluation: every image labelled as `predict` labels it.
#[derive(Debug, Clone)]
pub(crate) struct FaceScoring {
    /// The report over every image (`unknown`, `no_face` and unreadable images are wrong).
    pub report: Report,
    /// Images answered `unknown`.
    pub unknown: usize,
    /// Images without a face, with the reason.
    pub no_face: Vec<Skipped>,
    /// The vector standing for each image with a face (see
    /// [`crate::label::representative_face`]), for open-set figures.
    pub known_vectors: Vec<Vec<f32>>,
    /// Images with several faces labelled by a known face.
    pub multi_face_labelled: usize,
}

/// One image to score: its true class (an index into the head's classes), its path, and its
/// embeddings (`None` when it could not be read).
pub(crate) type Scored<'a> = (usize, &'a Path, Option<&'a Vec<Embedding>>);

/// Labels every image and scores the labels against the images' classes (`classes`: the head's).
pub(crate) fn score_images(
    labeller: &crate::label::Labeller<'_>,
    images: &[Scored<'_>],
    classes: &[String],
) -> Result<FaceScoring> {
    let k = classes.len();
    let uniform = vec![1.0 / k.max(1) as f32; k];
    let (mut y_true, mut y_pred, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unknown, mut no_face, mut known_vectors, mut multi_face_labelled) =
        (0, Vec::new(), Vec::new(), 0);
    for &(class, path, emb) in images {
        y_true.push(class);
        let Some(emb) = emb else {
            // Could not be read: listed under `skipped`, and wrong.
            y_pred.push(None);
            rows.extend_from_slice(&uniform);
            continue;
        };
        let (faces, label) = labeller.label(emb)?;
        if label == crate::label::ImageLabel::NoFace {
            no_face.push(Skipped {
                path: path.to_path_buf(),
                reason: format!("no face found; scored as wrong{NO_FACE_HINT}"),
            });
        }
        if label == crate::label::ImageLabel::Unknown {
            unknown += 1;
        }
        if label.class().is_some() && emb.len() > 1 {
            multi_face_labelled += 1;
        }
        y_pred.push(label.class());
        match crate::label::representative_face(&faces, &label) {
            Some(f) => {
                rows.extend_from_slice(&faces[f].probabilities);
                known_vectors.push(emb[f].vector.clone());
            }
            None => rows.extend_from_slice(&uniform),
        }
    }
    let proba = Array2::from_shape_vec((y_true.len(), k), rows).expect("one row per image");
    Ok(FaceScoring {
        report: crate::metrics::evaluate_predictions(&y_true, &y_pred, proba.view(), classes)?,
        unknown,
        no_face,
        known_vectors,
        multi_face_labelled,
    })
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
    let mut unmatched = Vec::new();
    let mut resolved = 0;
    // Face models: every validation image, scored as `predict` labels it (after the fit).
    let mut val_images: Vec<Scored<'_>> = Vec::new();
    // Face models: the training faces, chosen by identity.
    if kind == ModelKind::Face {
        let n_train = data.split.train.len();
        let readable: Vec<(usize, &Vec<Embedding>)> = (0..n_train)
            .filter_map(|k| extracted.embeddings[k].as_ref().map(|e| (k, e)))
            .collect();
        let photos: Vec<&[Embedding]> = readable.iter().map(|(_, e)| e.as_slice()).collect();
        let labels: Vec<usize> = readable
            .iter()
            .map(|&(k, _)| ds.samples[wanted[k]].class)
            .collect();
        let identity = crate::face::identity::IdentityOptions {
            match_cosine: pipeline
                .model
                .manifest
                .face()
                .and_then(|f| f.embedder.match_cosine_threshold)
                .unwrap_or(crate::face::identity::IdentityOptions::default().match_cosine),
            ..Default::default()
        };
        let choices = crate::face::identity::choose_by_identity(&photos, &labels, &identity);
        for ((k, emb), choice) in readable.iter().zip(&choices) {
            let sample = &ds.samples[wanted[*k]];
            let left_out = |reason: Option<String>| Skipped {
                path: sample.path.clone(),
                reason: reason.unwrap_or_default(),
            };
            let reason = choice.reason(identity.match_cosine);
            match choice {
                IdentityChoice::Faces { faces, resolved: r } => {
                    resolved += usize::from(*r);
                    for &f in faces {
                        rows[0].0.push(emb[f].vector.clone());
                        rows[0].1.push(sample.class);
                    }
                }
                IdentityChoice::NoFace => no_face.push(left_out(reason)),
                IdentityChoice::NoMatch { .. } => unmatched.push(left_out(reason)),
                IdentityChoice::Ambiguous { .. } => ambiguous.push(left_out(reason)),
            }
        }
    }
    for (k, &i) in wanted.iter().enumerate() {
        let part = usize::from(k >= data.split.train.len());
        if kind == ModelKind::Face {
            if part == 1 {
                val_images.push((
                    ds.samples[i].class,
                    ds.samples[i].path.as_path(),
                    extracted.embeddings[k].as_ref(),
                ));
            }
            continue;
        }
        let Some(embeddings) = &extracted.embeddings[k] else {
            continue;
        };
        match training_vector(kind, embeddings) {
            Use::Vector(v) => {
                rows[part].0.push(v);
                rows[part].1.push(ds.samples[i].class);
            }
            Use::NoFace => no_face.push(Skipped {
                path: ds.samples[i].path.clone(),
                reason: "no face found; not trained on".into(),
            }),
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
            .chain(&ambiguous)
            .chain(&unmatched)
            .map(|a: &Skipped| a.path.as_path())
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
    let fitted = crate::head::fit(to_matrix(&train_x).view(), &train_y, &params)?;
    let fit_seconds = start.elapsed().as_secs_f64();

    let mut open_set = None;
    let mut summary = None;
    if kind == ModelKind::Face {
        let cal = Calibration {
            false_reject_rate: opts.false_reject_rate,
            folds: 5,
            seed: opts.params.seed(),
        };
        open_set = Some(OpenSet::calibrate(
            &train_x,
            &train_y,
            ds.classes.len(),
            &cal,
        )?);
    }
    // Face models: every validation image gets the label `predict` would give it.
    let score_faces = |head: &crate::head::SoftmaxHead| -> Result<Option<FaceScoring>> {
        if kind != ModelKind::Face || val_images.is_empty() {
            return Ok(None);
        }
        let labeller = crate::label::Labeller {
            head,
            open_set: open_set.as_ref(),
        };
        score_images(&labeller, &val_images, &ds.classes).map(Some)
    };
    let face_scoring = score_faces(&fitted.head)?;
    let mut unknown = 0;
    let validation = if let Some(f) = &face_scoring {
        unknown = f.unknown;
        no_face.extend(f.no_face.iter().cloned());
        Some(f.report.clone())
    } else if val_x.is_empty() {
        None
    } else {
        let proba = fitted.head.predict_proba(to_matrix(&val_x).view());
        Some(crate::metrics::evaluate(&val_y, proba.view(), &ds.classes)?)
    };
    if let Some(set) = &open_set {
        summary = Some(OpenSetSummary {
            threshold: set.threshold,
            false_reject_rate: set.false_reject_rate,
            validation: face_scoring
                .as_ref()
                .map(|f| set.evaluate(&f.known_vectors, &[])),
        });
    }

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
            let refit = crate::head::fit(
                to_matrix(&train_x).view(),
                &train_y,
                &params.with_class_weight(other),
            )?;
            let o = match score_faces(&refit.head)? {
                Some(f) => f.report,
                None => {
                    let proba = refit.head.predict_proba(to_matrix(&val_x).view());
                    crate::metrics::evaluate(&val_y, proba.view(), &ds.classes)?
                }
            };
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
        accuracy: validation.as_ref().map(|r| r.accuracy),
        macro_f1: validation.as_ref().map(|r| r.macro_f1),
        log_loss: validation.as_ref().map(|r| r.log_loss),
        n_train: train_x.len(),
        n_val: if kind == ModelKind::Face {
            val_images.len()
        } else {
            val_x.len()
        },
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
        no_face: {
            no_face.sort_by(|a, b| a.path.cmp(&b.path));
            no_face
        },
        ambiguous,
        unmatched,
        unknown,
        resolved,
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
    match &r.validation {
        Some(v) => {
            let _ = writeln!(s, "\nvalidation:\n{}", v.human());
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

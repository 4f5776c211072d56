//! Fit: the `qcyn fit` workflow. Features of the split's images come through the cache (the
//! backbone runs only on what is missing), the head is fitted on the training part, the
//! validation part is scored, and everything needed to predict is written as one bundle.
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array2;

use crate::atomic::write_atomic;
use crate::bundle::{bundle_path, Bundle, SplitSource, TrainingConfig};
use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::{Error, Result};
use crate::extract::{extract, ExtractOptions};
use crate::face::identity::IdentityChoice;
use crate::face::openset::{Calibration, OpenSet};
use crate::features::Embedding;
use crate::head::{ClassWeight, SoftmaxValidParams};
use crate::metrics::Report;
use crate::models::ModelKind;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;
use crate::split::manifest::SplitManifest;
use crate::split::{Split, SplitSpec};

mod report;
mod scoring;

pub use report::*;
pub(crate) use scoring::*;

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
    /// The images `fit` embeds, training part first, then validation: their sample indices and
    /// paths.
    pub fn fitted(&self) -> (Vec<usize>, Vec<PathBuf>) {
        let split = &self.split;
        let wanted: Vec<usize> = split.train.iter().chain(&split.val).copied().collect();
        let paths = wanted
            .iter()
            .map(|&i| self.dataset.samples[i].path.clone())
            .collect();
        (wanted, paths)
    }

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
    /// `--unfreeze N`: the trained tail the pipeline runs (recorded in the bundle) and how it was
    /// trained (in the report). `None`: the frozen backbone.
    pub unfreeze: Option<(
        crate::unfreeze::TrainedTail,
        crate::unfreeze::UnfreezeReport,
    )>,
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
    let (wanted, paths) = data.fitted();
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
    // Whole-image models: each validation row's sample.
    let mut val_samples: Vec<usize> = Vec::new();
    // Whole-image models: validation images that could not be read (each counts as wrong).
    let mut val_unread: Vec<usize> = Vec::new();
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
                    let i = wanted[*k];
                    for &f in faces {
                        rows[0].0.push(emb[f].vector.clone());
                        rows[0].1.push(sample.class);
                        row_units[0].push(units.as_ref().map_or(i, |u| u[i]));
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
            // Unreadable: listed under `skipped`; a validation image is scored as wrong.
            if part == 1 {
                val_unread.push(i);
            }
            continue;
        };
        match training_vector(kind, embeddings) {
            Use::Vector(v) => {
                if part == 1 {
                    val_samples.push(i);
                }
                rows[part].0.push(v);
                rows[part].1.push(ds.samples[i].class);
                row_units[part].push(units.as_ref().map_or(i, |u| u[i]));
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
    let train_units = units.is_some().then_some(row_units[0].as_slice());
    let fitted =
        crate::head::fit_grouped(to_matrix(&train_x).view(), &train_y, train_units, &params)?;
    // Too few distinct photos held out to measure on: every photo held out once instead.
    let estimate = match (kind, units.is_some()) {
        // A fine-tuned tail has seen every training image, so cross-validating the head on
        // them would not be an estimate for unseen photos: the held-out part is reported.
        (ModelKind::Whole | ModelKind::Fusion, true) if opts.unfreeze.is_none() => {
            let rows = |p: usize| crate::estimate::Rows {
                x: if p == 0 { &train_x } else { &val_x },
                y: if p == 0 { &train_y } else { &val_y },
                units: &row_units[p],
            };
            // Each fold refits with what this fit chose: strength, scaling and part weights.
            let chosen = match &fitted.cv {
                Some(cv) => params.with_choice(cv.scaling, &cv.part_weights),
                None => params.clone(),
            };
            crate::estimate::when_held_out_is_small(
                rows(0),
                rows(1),
                &ds.classes,
                &chosen,
                fitted.head.l2,
            )?
        }
        _ => None,
    };
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
    let mut validation_images = Vec::new();
    let validation = if let Some(f) = &face_scoring {
        unknown = f.unknown;
        no_face.extend(f.no_face.iter().cloned());
        validation_images = f.images.clone();
        Some(f.report.clone())
    } else if val_x.is_empty() && val_unread.is_empty() {
        None
    } else {
        let k = ds.classes.len();
        let proba = if val_x.is_empty() {
            Array2::zeros((0, k))
        } else {
            fitted.head.predict_proba(to_matrix(&val_x).view())
        };
        let (mut y_true, mut y_pred, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for (r, &i) in val_samples.iter().enumerate() {
            let p = proba.row(r).to_vec();
            let best = (0..p.len()).fold(0, |b, c| if p[c] > p[b] { c } else { b });
            validation_images.push(ValidationImage::new(
                &ds.samples[i].path,
                &ds.classes,
                ds.samples[i].class,
                Some(ds.classes[best].clone()),
                &p,
                None,
            ));
            y_true.push(ds.samples[i].class);
            y_pred.push(Some(best));
            rows.extend_from_slice(&p);
        }
        // An unreadable validation image has no answer: wrong, with uniform probabilities.
        let uniform = vec![1.0 / k as f32; k];
        for &i in &val_unread {
            validation_images.push(ValidationImage::new(
                &ds.samples[i].path,
                &ds.classes,
                ds.samples[i].class,
                None,
                &uniform,
                None,
            ));
            y_true.push(ds.samples[i].class);
            y_pred.push(None);
            rows.extend_from_slice(&uniform);
        }
        let all = Array2::from_shape_vec((y_true.len(), k), rows).expect("k per image");
        Some(if val_unread.is_empty() {
            crate::metrics::evaluate(&val_y, proba.view(), &ds.classes)?
        } else {
            crate::metrics::evaluate_predictions(&y_true, &y_pred, all.view(), &ds.classes)?
        })
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
            let refit = crate::head::fit_grouped(
                to_matrix(&train_x).view(),
                &train_y,
                train_units,
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
    bundle.tail = opts.unfreeze.as_ref().map(|(t, _)| t.clone());
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
        n_val: if kind == ModelKind::Face {
            val_images.len()
        } else {
            val_x.len() + val_unread.len()
        },
        n_test: data.split.test.len(),
        classes: ds.classes.clone(),
        backbone_runs: extracted.report.backbone_runs
            + opts
                .unfreeze
                .as_ref()
                .map_or(0, |(_, r)| r.map_backbone_runs),
        unfreeze: opts.unfreeze.as_ref().map_or(0, |(t, _)| t.blocks),
        epochs_run: opts.unfreeze.as_ref().map(|(_, r)| r.outcome.epochs_run),
        best_epoch: opts.unfreeze.as_ref().map(|(_, r)| r.outcome.best_epoch),
        train_seconds: opts.unfreeze.as_ref().map(|(_, r)| r.outcome.train_seconds),
        fine_tuning: opts.unfreeze.as_ref().map(|(_, r)| r.clone()),
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
        validation_images,
    };

    // The bundle goes last, so a failure before it leaves no bundle that lacks its reports.
    let (dir, stem) = crate::bundle::place(&file);
    let dir = dir.as_path();
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
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

//! Compare: the `qcyn compare` workflow. Which backbone, which head and which class weighting to
//! use, measured over repeated random splits of the user's own images, with a 95% interval.
//!
//! - [`features`] runs one backbone over every image of the dataset through the cache (so the
//!   backbone runs once per image and model, ever), giving one vector per image or the reason it
//!   has none.
//! - [`splits`] makes the `R` splits (seeds `S`, `S+1`, …, `S+R−1`) with a [`SplitMethod`]:
//!   `qcyn compare` uses [`crate::split::grouped`] with the near-duplicate groups of
//!   [`crate::dups`] (leak-proof, the default), or [`SplitMethod::stratified`] with `--no-group`.
//! - [`compare`] fits every recipe (model × head × class weighting) on every split's training part
//!   and scores it on that split's validation part, then aggregates ([`stats`]) and recommends
//!   (`recommend.rs`).
//!
//! Every image counts. An image that could not be decoded (or, with a face model, has no usable
//! face) is listed in the report; in every repeat where it falls in the validation part it is
//! scored as a wrong prediction of its true class (a miss: it lowers accuracy and that class's
//! recall, and is a false positive of no class); where it falls in the training part it is simply
//! not trained on.
//!
//! Recipes: the softmax head ([`crate::head::fit`]: L2 strength by cross-validation on the
//! training part) with class weights none or balanced; nearest class centroid (cosine), for which
//! class weights do not apply (`n/a`: the centroid rule ignores class sizes); k-nearest neighbours
//! (cosine, `k` by leave-one-out on the training part) with plain or balanced votes.
//!
//! The recommendation: the recipe with the best mean accuracy, unless a simpler recipe is within
//! noise of it (the paired 95% interval of their per-repeat accuracy difference contains 0, see
//! [`stats`]); then the simplest such recipe: head centroid < knn < softmax, then class weighting
//! none (or n/a) < balanced, then the smaller model (bytes of its ONNX files), then the higher mean.
use std::path::PathBuf;
use std::time::Instant;

use ndarray::Array2;
use rayon::prelude::*;
use serde::Serialize;

use crate::cache::FeatureCache;
use crate::dataset::{Dataset, Skipped};
use crate::error::{Error, Result};
use crate::extract::{extract, ExtractOptions};
use crate::fit::{training_vector, Use};
use crate::head::centroid::CentroidHead;
use crate::head::knn::{KnnHead, DEFAULT_K_GRID};
use crate::head::{ClassWeight, HeadError, SoftmaxParams};
use crate::metrics::label_scores;
use crate::models::Model;
use crate::pipeline::Pipeline;
use crate::progress::Reporter;
use crate::split::{Split, SplitRule, SplitSpec};

mod recommend;
pub mod stats;
pub mod tuned;

use recommend::recommend;

/// A head `compare` can fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Nearest class centroid, cosine.
    Centroid,
    /// k-nearest neighbours, cosine.
    Knn,
    /// The softmax head (multinomial logistic regression).
    Softmax,
}

impl HeadKind {
    /// Every head, simplest first.
    pub const ALL: [HeadKind; 3] = [HeadKind::Centroid, HeadKind::Knn, HeadKind::Softmax];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Centroid => "centroid",
            HeadKind::Knn => "knn",
            HeadKind::Softmax => "softmax",
        }
    }

    /// The class weightings that mean something for this head.
    fn weightings(self) -> &'static [Weighting] {
        match self {
            HeadKind::Centroid => &[Weighting::NotApplicable],
            HeadKind::Knn | HeadKind::Softmax => &[Weighting::None, Weighting::Balanced],
        }
    }

    /// Training images each class needs: softmax cross-validates its L2 strength (one to hold
    /// out, one to train); the others need one.
    fn needs(self) -> usize {
        match self {
            HeadKind::Softmax => 2,
            HeadKind::Centroid | HeadKind::Knn => 1,
        }
    }
}

/// The class weighting of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Weighting {
    /// Every image counts once.
    #[serde(rename = "none")]
    None,
    /// Every class weighs the same in total.
    #[serde(rename = "balanced")]
    Balanced,
    /// The head takes no class weights (nearest centroid).
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Weighting {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Weighting::None => "none",
            Weighting::Balanced => "balanced",
            Weighting::NotApplicable => "n/a",
        }
    }

    fn class_weight(self) -> ClassWeight {
        match self {
            Weighting::Balanced => ClassWeight::Balanced,
            Weighting::None | Weighting::NotApplicable => ClassWeight::None,
        }
    }
}

/// One backbone's features of every image of a dataset.
#[derive(Debug, Clone)]
pub struct ModelFeatures {
    /// Model name.
    pub model: String,
    /// Bytes of its ONNX files (the smaller model is the simpler recipe).
    pub size_bytes: u64,
    /// One vector per dataset sample, `None` when the image gave none (see `left_out`).
    pub vectors: Vec<Option<Vec<f32>>>,
    /// The images without a vector, and why.
    pub left_out: Vec<Skipped>,
    /// Images that went through the backbone in this run (0 when all were cached).
    pub backbone_runs: u64,
    /// Seconds spent getting the features.
    pub seconds: f64,
    /// A fine-tuned recipe (`compare --unfreeze N`, [`tuned::features`]): each repeat's vectors,
    /// from the tail trained on that repeat's training part (`vectors` is then the first's).
    pub per_repeat: Vec<Vec<Option<Vec<f32>>>>,
}

/// Runs `pipeline` over every image of `dataset` through `cache` (the backbone runs only on what
/// is missing).
pub fn features(
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    dataset: &Dataset,
    opts: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<ModelFeatures> {
    let kind = pipeline.model.manifest.kind();
    let paths: Vec<PathBuf> = dataset.samples.iter().map(|s| s.path.clone()).collect();
    let extracted = extract(pipeline, cache, &paths, opts, reporter)?;
    let mut left_out = extracted.report.skipped.clone();
    let mut vectors = Vec::with_capacity(paths.len());
    for (path, e) in paths.iter().zip(&extracted.embeddings) {
        let v = match e {
            None => None,
            Some(e) => match training_vector(kind, e) {
                Use::Vector(v) => Some(v),
                Use::NoFace => {
                    left_out.push(Skipped {
                        path: path.clone(),
                        reason: "no face found".into(),
                    });
                    None
                }
                Use::Ambiguous(reason) => {
                    left_out.push(Skipped {
                        path: path.clone(),
                        reason,
                    });
                    None
                }
            },
        };
        vectors.push(v);
    }
    left_out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ModelFeatures {
        model: pipeline.model.manifest.name.clone(),
        size_bytes: model_bytes(&pipeline.model),
        vectors,
        left_out,
        backbone_runs: extracted.report.backbone_runs,
        seconds: extracted.report.seconds,
        per_repeat: Vec::new(),
    })
}

/// Bytes of a model's files (0 for a file that cannot be read).
pub fn model_bytes(model: &Model) -> u64 {
    model
        .files()
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// How each repeat's split is made: the seam where grouped (leak-proof) splitting plugs in. The
/// function gets the dataset and the repeat's spec (its seed is `S + r`) and returns the split.
#[derive(Clone, Copy)]
pub struct SplitMethod<'a> {
    /// Its name in reports (`stratified`).
    pub name: &'static str,
    /// Makes one split.
    pub split: &'a (dyn Fn(&Dataset, &SplitSpec) -> Result<Split> + Sync),
    /// The near-duplicate groups the split keeps together (sample indices), which the softmax
    /// head's cross-validation of its L2 strength then keeps in one fold too; empty for none.
    pub groups: &'a [Vec<usize>],
}

impl std::fmt::Debug for SplitMethod<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitMethod")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SplitMethod<'static> {
    /// [`crate::split::stratified`]: per class, seeded, on paths, without looking for
    /// near-duplicates (`--no-group`).
    pub fn stratified() -> Self {
        SplitMethod {
            name: "stratified",
            split: &crate::split::stratified,
            groups: &[],
        }
    }
}

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Heads to fit (each with the class weightings that apply to it).
    pub heads: Vec<HeadKind>,
    /// Number of repeated splits (at least 2, for an interval).
    pub repeats: usize,
    /// How each split holds out validation images.
    pub rule: SplitRule,
    /// Seed of the first repeat; repeat `r` uses `seed + r`.
    pub seed: u64,
    /// Cross-validation folds of the softmax head (reduced to the smallest class, as `fit` does).
    pub folds: usize,
}

impl CompareOptions {
    /// The spec of repeat `r`.
    pub fn spec(&self, r: usize) -> SplitSpec {
        SplitSpec {
            rule: self.rule,
            test_per_class: None,
            seed: self.seed + r as u64,
        }
    }
}

/// Makes the `R` splits, after checking that every class can be split: two classes at least, and
/// each with enough images to hold some out and still train every head asked for.
pub fn splits(dataset: &Dataset, opts: &CompareOptions, method: SplitMethod) -> Result<Vec<Split>> {
    if opts.repeats < 2 {
        return Err(Error::config(
            format!(
                "--repeats {} gives no interval: at least 2 repeats are needed",
                opts.repeats
            ),
            Some("use --repeats 5 (the default)".into()),
        ));
    }
    if opts.heads.is_empty() {
        return Err(Error::config(
            "no heads to compare",
            Some("pass --heads softmax,centroid,knn".into()),
        ));
    }
    if dataset.classes.len() < 2 {
        return Err(Error::config(
            format!(
                "only one class (`{}`) in {}: there is nothing to tell apart",
                dataset.classes.first().map_or("", String::as_str),
                dataset.root.display()
            ),
            Some("add a folder of images for each other category".into()),
        ));
    }
    let needs = opts.heads.iter().map(|h| h.needs()).max().unwrap_or(1);
    let why = if needs == 2 {
        "the softmax head chooses its L2 strength by cross-validation on the training part"
    } else {
        "every head needs a training image of each class"
    };
    let mut short = Vec::new();
    for (c, &m) in dataset.class_counts().iter().enumerate() {
        let val = match opts.rule {
            SplitRule::ValPerClass { n } => n,
            SplitRule::ValFraction { f } => {
                ((f * m as f64).round() as usize).clamp(1, m.saturating_sub(1).max(1))
            }
        };
        if m < val + needs {
            short.push(format!(
                "class `{}` has {m} image(s); {} needs at least {} per class ({val} validated + {needs} trained on)",
                dataset.classes[c],
                opts.rule.as_flag(),
                val + needs
            ));
        }
    }
    if !short.is_empty() {
        return Err(Error::config(
            format!("{}: {why}", short.join("; ")),
            Some(match opts.rule {
                SplitRule::ValPerClass { .. } => "add images to the classes named, lower --val-per-class, or leave out --heads softmax".into(),
                SplitRule::ValFraction { .. } => "add images to the classes named, or remove their folders".into(),
            }),
        ));
    }
    (0..opts.repeats)
        .map(|r| (method.split)(dataset, &opts.spec(r)))
        .collect()
}

/// One recipe's scores over the repeats.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Backbone.
    pub model: String,
    /// Head.
    pub head: HeadKind,
    /// Class weighting (`none`, `balanced`, or `n/a`).
    pub class_weight: Weighting,
    /// Mean validation accuracy over the repeats.
    pub accuracy_mean: f64,
    /// 95% interval of the accuracy (corrected resampled t-interval, see [`stats`]).
    pub accuracy_ci95: [f64; 2],
    /// Sample standard deviation of the accuracy over repeats.
    pub accuracy_sd: f64,
    /// Mean validation macro-F1.
    pub macro_f1_mean: f64,
    /// 95% interval of the macro-F1 (the same kind).
    pub macro_f1_ci95: [f64; 2],
    /// Number of repeats.
    pub n_repeats: usize,
    /// Accuracy of each repeat.
    pub accuracy_per_repeat: Vec<f64>,
    /// Macro-F1 of each repeat.
    pub macro_f1_per_repeat: Vec<f64>,
    /// What the head chose on each repeat's training part (`l2=…`, `k=…`; empty for centroid).
    pub chosen: Vec<String>,
}

/// The recipe `compare` recommends.
#[derive(Debug, Clone, Serialize)]
pub struct Recommended {
    /// Backbone.
    pub model: String,
    /// Head.
    pub head: HeadKind,
    /// Class weighting.
    pub class_weight: Weighting,
    /// Why, in one or two sentences.
    pub why: String,
}

/// A model's part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ModelUse {
    /// Model name.
    pub model: String,
    /// Images run through the backbone in this run (0 when all were cached).
    pub backbone_runs: u64,
    /// Seconds spent getting features.
    pub extract_seconds: f64,
    /// Images without a vector from this model, and why: each is scored as a miss whenever it is
    /// validated on.
    pub left_out: Vec<Skipped>,
}

/// What `qcyn compare` reports (its `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// One row per recipe, in model, head, weighting order.
    pub rows: Vec<Row>,
    /// The recommended recipe.
    pub recommended: Recommended,
    /// How the intervals are computed.
    pub interval: String,
    /// When two recipes are taken as tied.
    pub tie_rule: String,
    /// The split rule of every repeat.
    pub rule: SplitRule,
    /// How splits are made (`stratified`).
    pub split_method: String,
    /// Seeds of the repeats.
    pub seeds: Vec<u64>,
    /// Class names.
    pub classes: Vec<String>,
    /// Images in the dataset (every one is scored whenever it is validated on).
    pub n_images: usize,
    /// Validation images per repeat.
    pub n_val: usize,
    /// Training images per repeat.
    pub n_train: usize,
    /// Per model: backbone runs and the images it gave no vector for.
    pub models: Vec<ModelUse>,
    /// Files of the dataset that are not images, and why (never scored).
    pub skipped: Vec<Skipped>,
    /// Seconds spent fitting and scoring every recipe on every repeat.
    pub evaluate_seconds: f64,
}

const INTERVAL: &str = "95% corrected resampled t-interval over the repeats (Nadeau & Bengio 2003): mean ± t(0.975, R−1)·sqrt((1/R + n_val/n_train)·s²), clipped to [0, 1]";
const TIE_RULE: &str = "a recipe is within noise of the best when the paired 95% interval (same kind) of their per-repeat accuracy difference contains 0; among those the simplest wins: centroid < knn < softmax, then none/n-a < balanced, then the smaller model";

/// Fits and scores every recipe on every split, and recommends one.
pub fn compare(
    dataset: &Dataset,
    models: &[ModelFeatures],
    splits: &[Split],
    opts: &CompareOptions,
    method: SplitMethod,
) -> Result<CompareReport> {
    let start = Instant::now();
    let mut recipes = Vec::new();
    for (m, _) in models.iter().enumerate() {
        let mut heads = opts.heads.clone();
        heads.sort();
        heads.dedup();
        for h in heads {
            for &w in h.weightings() {
                recipes.push((m, h, w));
            }
        }
    }
    // Each sample's near-duplicate unit, for the softmax head's folds (`None` without grouping).
    let units = (!method.groups.is_empty())
        .then(|| crate::estimate::units(dataset.samples.len(), method.groups));
    // Every (recipe, repeat) is one job; the softmax head parallelises inside too.
    let jobs: Vec<(usize, usize)> = (0..recipes.len())
        .flat_map(|i| (0..splits.len()).map(move |r| (i, r)))
        .collect();
    let results: Vec<Result<(f64, f64, String)>> = jobs
        .par_iter()
        .map(|&(i, r)| {
            let (m, head, w) = recipes[i];
            score(dataset, &models[m], &splits[r], head, w, opts, (r, &units))
        })
        .collect();
    let mut rows = Vec::with_capacity(recipes.len());
    let mut results = results.into_iter();
    let ratio = splits
        .iter()
        .map(|s| s.val.len() as f64 / s.train.len().max(1) as f64)
        .sum::<f64>()
        / splits.len() as f64;
    for &(m, head, w) in &recipes {
        let mut acc = Vec::new();
        let mut f1 = Vec::new();
        let mut chosen = Vec::new();
        for _ in splits {
            let (a, f, c) = results.next().expect("one result per job")?;
            acc.push(a);
            f1.push(f);
            chosen.push(c);
        }
        rows.push(Row {
            model: models[m].model.clone(),
            head,
            class_weight: w,
            accuracy_mean: stats::mean_sd(&acc).0,
            accuracy_ci95: stats::interval(&acc, ratio),
            accuracy_sd: stats::mean_sd(&acc).1,
            macro_f1_mean: stats::mean_sd(&f1).0,
            macro_f1_ci95: stats::interval(&f1, ratio),
            n_repeats: splits.len(),
            accuracy_per_repeat: acc,
            macro_f1_per_repeat: f1,
            chosen: if head == HeadKind::Centroid {
                Vec::new()
            } else {
                chosen
            },
        });
    }
    let sizes: Vec<u64> = recipes
        .iter()
        .map(|&(m, _, _)| models[m].size_bytes)
        .collect();
    let recommended = recommend(&rows, &sizes, ratio);
    Ok(CompareReport {
        recommended,
        interval: INTERVAL.into(),
        tie_rule: TIE_RULE.into(),
        rule: opts.rule,
        split_method: method.name.into(),
        seeds: (0..splits.len()).map(|r| opts.spec(r).seed).collect(),
        classes: dataset.classes.clone(),
        n_images: dataset.samples.len(),
        n_val: splits[0].val.len(),
        n_train: splits[0].train.len(),
        models: models
            .iter()
            .map(|f| ModelUse {
                model: f.model.clone(),
                backbone_runs: f.backbone_runs,
                extract_seconds: f.seconds,
                left_out: f.left_out.clone(),
            })
            .collect(),
        skipped: dataset.skipped.clone(),
        evaluate_seconds: start.elapsed().as_secs_f64(),
        rows,
    })
}

/// Fits one recipe on one split's training part and scores it on the validation part: accuracy,
/// macro-F1 and what the head chose.
fn score(
    dataset: &Dataset,
    features: &ModelFeatures,
    split: &Split,
    head: HeadKind,
    w: Weighting,
    opts: &CompareOptions,
    (repeat, units): (usize, &Option<Vec<usize>>),
) -> Result<(f64, f64, String)> {
    let k = dataset.classes.len();
    let vectors = features.per_repeat.get(repeat).unwrap_or(&features.vectors);
    let rows = |idx: &[usize]| -> (Vec<usize>, Array2<f32>, Vec<usize>) {
        let have: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| vectors[i].is_some())
            .collect();
        let d = have
            .first()
            .and_then(|&i| vectors[i].as_ref())
            .map_or(0, Vec::len);
        let mut x = Vec::with_capacity(have.len() * d);
        for &i in &have {
            x.extend_from_slice(vectors[i].as_ref().expect("kept"));
        }
        let y = have.iter().map(|&i| dataset.samples[i].class).collect();
        let x = Array2::from_shape_vec((have.len(), d), x).expect("rows of equal length");
        (have, x, y)
    };
    let (train_have, train_x, train_y) = rows(&split.train);
    let train_units: Option<Vec<usize>> = units
        .as_ref()
        .map(|u| train_have.iter().map(|&i| u[i]).collect());
    let (val_have, val_x, _) = rows(&split.val);
    let named = |e: HeadError| -> Error {
        match e {
            HeadError::ClassTooSmall { class, count, needed, .. } => Error::config(
                format!(
                    "repeat {} (seed {}): class `{}` has {count} usable training image(s) with model `{}`; the {} head needs {needed}",
                    repeat + 1,
                    opts.spec(repeat).seed,
                    dataset.classes[class],
                    features.model,
                    head.name()
                ),
                Some("add images to that class (images that cannot be decoded do not count), or hold out fewer".into()),
            ),
            e => Error::Head(e),
        }
    };
    let (predicted, chosen) = if val_x.nrows() == 0 {
        (Vec::new(), String::new())
    } else {
        match head {
            HeadKind::Centroid => {
                let h = CentroidHead::fit(train_x.view(), &train_y, k).map_err(named)?;
                (h.predict(val_x.view()).map_err(named)?, String::new())
            }
            HeadKind::Knn => {
                let h = KnnHead::fit(
                    train_x.view(),
                    &train_y,
                    k,
                    w.class_weight(),
                    &DEFAULT_K_GRID,
                )
                .map_err(named)?;
                (
                    h.predict(val_x.view()).map_err(named)?,
                    format!("k={}", h.k),
                )
            }
            HeadKind::Softmax => {
                use linfa::ParamGuard;
                let params = SoftmaxParams::new()
                    .folds(opts.folds)
                    .seed(opts.spec(repeat).seed)
                    .class_weight(w.class_weight())
                    .n_classes(k)
                    .check()
                    .map_err(named)?;
                let fitted = crate::head::fit_grouped(
                    train_x.view(),
                    &train_y,
                    train_units.as_deref(),
                    &params,
                )
                .map_err(named)?;
                let proba = fitted.head.try_predict_proba(val_x.view()).map_err(named)?;
                let pred = proba
                    .rows()
                    .into_iter()
                    .map(|r| {
                        let mut best = 0;
                        for (j, &p) in r.iter().enumerate() {
                            if p > r[best] {
                                best = j;
                            }
                        }
                        best
                    })
                    .collect();
                (pred, format!("l2={}", fitted.head.l2))
            }
        }
    };
    // Every validation image is scored; one without a vector is a miss.
    let mut y_pred: Vec<Option<usize>> = vec![None; split.val.len()];
    let mut it = val_have.iter().zip(&predicted).peekable();
    for (slot, &i) in split.val.iter().enumerate() {
        if let Some((&j, &p)) = it.peek() {
            if j == i {
                y_pred[slot] = Some(p);
                it.next();
            }
        }
    }
    let y_true: Vec<usize> = split
        .val
        .iter()
        .map(|&i| dataset.samples[i].class)
        .collect();
    let s = label_scores(&y_true, &y_pred, k);
    Ok((s.accuracy, s.macro_f1, chosen))
}

/// The report for people: a table, the recommendation and why, and the images left out.
pub fn human(r: &CompareReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} repeats of {} ({} split, seeds {}–{}): {} images, {} classes, {} trained on and {} validated on per repeat",
        r.seeds.len(),
        r.rule.as_flag(),
        r.split_method,
        r.seeds.first().copied().unwrap_or(0),
        r.seeds.last().copied().unwrap_or(0),
        r.n_images,
        r.classes.len(),
        r.n_train,
        r.n_val
    );
    let mw = r
        .rows
        .iter()
        .map(|x| x.model.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        s,
        "\n{:<mw$}  {:<8}  {:<12}  {:>8}  {:<15}  {:>8}  {:<12}",
        "model", "head", "class weight", "accuracy", "95% interval", "macro-F1", "chosen"
    );
    for x in &r.rows {
        let mark = if x.model == r.recommended.model
            && x.head == r.recommended.head
            && x.class_weight == r.recommended.class_weight
        {
            " *"
        } else {
            ""
        };
        let mut chosen: Vec<&str> = x.chosen.iter().map(String::as_str).collect();
        chosen.dedup();
        let _ = writeln!(
            s,
            "{:<mw$}  {:<8}  {:<12}  {:>8.3}  [{:.3}, {:.3}]  {:>8.3}  {}{mark}",
            x.model,
            x.head.name(),
            x.class_weight.name(),
            x.accuracy_mean,
            x.accuracy_ci95[0],
            x.accuracy_ci95[1],
            x.macro_f1_mean,
            chosen.join(" ")
        );
    }
    let rec = &r.recommended;
    let _ = writeln!(
        s,
        "\nrecommended (*): {} + {} (class weights {}): {}",
        rec.model,
        rec.head.name(),
        rec.class_weight.name(),
        rec.why
    );
    let _ = writeln!(s, "interval: {}", r.interval);
    for m in &r.models {
        for l in &m.left_out {
            let _ = writeln!(
                s,
                "no features from {}: {}: {} (scored as a miss whenever validated on)",
                m.model,
                l.path.display(),
                l.reason
            );
        }
    }
    for k in &r.skipped {
        let _ = writeln!(s, "skipped {}: {}", k.path.display(), k.reason);
    }
    let runs: u64 = r.models.iter().map(|m| m.backbone_runs).sum();
    let extract: f64 = r.models.iter().map(|m| m.extract_seconds).sum();
    let _ = writeln!(
        s,
        "features: {runs} backbone runs, {extract:.2} s; fitting and scoring {} recipes × {} repeats: {:.2} s",
        r.rows.len(),
        r.seeds.len(),
        r.evaluate_seconds
    );
    s
}

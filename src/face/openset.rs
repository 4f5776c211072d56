//! Open-set recognition: tell "one of the known people" from "a stranger".
//!
//! An embedding's score is its highest cosine similarity to the class centroids (the mean of a
//! class's L2-normalised training embeddings, normalised again). It is *known* when that score is at
//! least a threshold. The threshold is calibrated on the training data alone, by stratified,
//! seeded k-fold cross-validation: every training embedding is scored against centroids built
//! without its fold, so the scores are what unseen photos of known people get; the threshold is
//! the quantile of those scores that rejects the requested share of them (the false-reject rate,
//! default 1%). Classes with a single training embedding cannot be held out and add no score.
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::face::embed::{dot, l2_normalise};

/// Default false-reject rate the threshold is calibrated for.
pub const DEFAULT_FALSE_REJECT_RATE: f32 = 0.01;
/// Default number of cross-validation folds.
pub const DEFAULT_FOLDS: usize = 5;

/// A calibrated open-set recogniser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSet {
    /// Embeddings scoring below this are strangers.
    pub threshold: f32,
    /// The false-reject rate the threshold was calibrated for.
    pub false_reject_rate: f32,
    /// One unit-length centroid per class (classes × dim), built from all training embeddings.
    pub centroids: Vec<Vec<f32>>,
    /// Number of cross-validated scores the threshold came from.
    pub calibrated_on: usize,
}

/// How to calibrate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Share of known embeddings the threshold may reject, in 0..1.
    pub false_reject_rate: f32,
    /// Cross-validation folds (at least 2).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            false_reject_rate: DEFAULT_FALSE_REJECT_RATE,
            folds: DEFAULT_FOLDS,
            seed: 0,
        }
    }
}

/// Unit-length class centroids of `embeddings` (each normalised first), over the rows `use_row`
/// allows; a class without rows gets `None`.
fn centroids_where(
    embeddings: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    use_row: impl Fn(usize) -> bool,
) -> Vec<Option<Vec<f32>>> {
    let dim = embeddings.first().map_or(0, Vec::len);
    let mut sums: Vec<Option<Vec<f32>>> = vec![None; classes];
    for (i, (e, &l)) in embeddings.iter().zip(labels).enumerate() {
        if !use_row(i) {
            continue;
        }
        let mut v = e.clone();
        l2_normalise(&mut v);
        let s = sums[l].get_or_insert_with(|| vec![0.0; dim]);
        s.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
    }
    for s in sums.iter_mut().flatten() {
        l2_normalise(s);
    }
    sums
}

/// Unit-length class centroids: class `c`'s is the normalised mean of its normalised embeddings.
/// Fails when a class in `0..classes` has no embedding, or shapes disagree.
pub fn centroids(
    embeddings: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
) -> Result<Vec<Vec<f32>>> {
    check_shapes(embeddings, labels, classes)?;
    centroids_where(embeddings, labels, classes, |_| true)
        .into_iter()
        .enumerate()
        .map(|(c, v)| {
            v.ok_or_else(|| Error::config(format!("class {c} has no training embedding"), None))
        })
        .collect()
}

fn check_shapes(embeddings: &[Vec<f32>], labels: &[usize], classes: usize) -> Result<()> {
    if embeddings.len() != labels.len() {
        return Err(Error::config(
            format!(
                "{} embeddings but {} labels",
                embeddings.len(),
                labels.len()
            ),
            None,
        ));
    }
    if embeddings.is_empty() {
        return Err(Error::config(
            "no training embeddings to build class centroids from",
            None,
        ));
    }
    let dim = embeddings[0].len();
    if let Some(e) = embeddings.iter().find(|e| e.len() != dim) {
        return Err(Error::config(
            format!("embeddings of different lengths: {dim} and {}", e.len()),
            None,
        ));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= classes) {
        return Err(Error::config(
            format!("label {l} is out of range for {classes} classes"),
            None,
        ));
    }
    Ok(())
}

/// Best class and its cosine similarity among `centroids` (unit length), for a unit-length `v`;
/// classes without a centroid are skipped. `(usize::MAX, -inf)` when there is none.
fn best(centroids: &[Option<Vec<f32>>], v: &[f32]) -> (usize, f32) {
    centroids
        .iter()
        .enumerate()
        .filter_map(|(c, m)| m.as_ref().map(|m| (c, dot(m, v))))
        .fold((usize::MAX, f32::NEG_INFINITY), |b, x| {
            if x.1 > b.1 {
                x
            } else {
                b
            }
        })
}

use crate::shuffle::stratified_folds;

/// Cross-validated scores of known embeddings: each row's best cosine against centroids built
/// without its fold. Rows of classes with a single embedding are skipped.
pub fn cross_validated_scores(
    embeddings: &[Vec<f32>],
    labels: &[usize],
    classes: usize,
    cal: &Calibration,
) -> Result<Vec<f32>> {
    check_shapes(embeddings, labels, classes)?;
    if cal.folds < 2 {
        return Err(Error::config(
            format!(
                "open-set calibration needs at least 2 folds, got {}",
                cal.folds
            ),
            None,
        ));
    }
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l] += 1);
    let folds = cal
        .folds
        .min(counts.iter().copied().max().unwrap_or(0))
        .max(2);
    let fold = stratified_folds(labels, folds, cal.seed);
    let mut scores = Vec::new();
    for f in 0..folds {
        let cents = centroids_where(embeddings, labels, classes, |i| fold[i] != f);
        for i in (0..embeddings.len()).filter(|&i| fold[i] == f && counts[labels[i]] >= 2) {
            let mut v = embeddings[i].clone();
            l2_normalise(&mut v);
            scores.push(best(&cents, &v).1);
        }
    }
    Ok(scores)
}

/// The threshold that rejects at most `rate` of `scores` (those strictly below it): the
/// ⌊rate·n⌋-th smallest score. `None` for no scores.
pub fn threshold_for_rate(scores: &[f32], rate: f32) -> Option<f32> {
    let mut s: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f32::total_cmp);
    // The epsilon absorbs f32 rounding (0.01f32·200 is 1.99999996, which must count as 2).
    let k =
        ((rate.clamp(0.0, 1.0) as f64 * s.len() as f64 + 1e-6).floor() as usize).min(s.len() - 1);
    Some(s[k])
}

impl OpenSet {
    /// Builds centroids from all of `embeddings` (labels in `0..classes`) and calibrates the
    /// threshold by cross-validation on them (see the module documentation).
    pub fn calibrate(
        embeddings: &[Vec<f32>],
        labels: &[usize],
        classes: usize,
        cal: &Calibration,
    ) -> Result<OpenSet> {
        if !(cal.false_reject_rate.is_finite() && (0.0..1.0).contains(&cal.false_reject_rate)) {
            return Err(Error::config(
                format!(
                    "false-reject rate must be in 0..1, got {}",
                    cal.false_reject_rate
                ),
                None,
            ));
        }
        let centroids = centroids(embeddings, labels, classes)?;
        let scores = cross_validated_scores(embeddings, labels, classes, cal)?;
        let threshold = threshold_for_rate(&scores, cal.false_reject_rate).ok_or_else(|| {
            Error::config(
                "cannot calibrate the unknown-person threshold: every class has a single training image",
                Some("give at least two images of some people".into()),
            )
        })?;
        Ok(OpenSet {
            threshold,
            false_reject_rate: cal.false_reject_rate,
            centroids,
            calibrated_on: scores.len(),
        })
    }

    /// The best class for `v` and its cosine similarity to that class's centroid.
    pub fn score(&self, v: &[f32]) -> (usize, f32) {
        let mut u = v.to_vec();
        l2_normalise(&mut u);
        self.centroids
            .iter()
            .enumerate()
            .map(|(c, m)| (c, dot(m, &u)))
            .fold((usize::MAX, f32::NEG_INFINITY), |b, x| {
                if x.1 > b.1 {
                    x
                } else {
                    b
                }
            })
    }

    /// True when `v` scores at least the threshold.
    pub fn is_known(&self, v: &[f32]) -> bool {
        self.score(v).1 >= self.threshold
    }

    /// Measures the recogniser on held-out embeddings of known people and of strangers.
    pub fn evaluate(&self, known: &[Vec<f32>], strangers: &[Vec<f32>]) -> OpenSetEvaluation {
        let rejected = known.iter().filter(|v| !self.is_known(v)).count();
        let stopped = strangers.iter().filter(|v| !self.is_known(v)).count();
        let rate = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f32 / d as f32 };
        OpenSetEvaluation {
            knowns: known.len(),
            strangers: strangers.len(),
            false_reject_rate: rate(rejected, known.len()),
            stranger_rejection_rate: rate(stopped, strangers.len()),
        }
    }
}

/// How an [`OpenSet`] did on held-out embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenSetEvaluation {
    /// Known-person embeddings evaluated.
    pub knowns: usize,
    /// Stranger embeddings evaluated.
    pub strangers: usize,
    /// Share of known-person embeddings called strangers.
    pub false_reject_rate: f32,
    /// Share of strangers called strangers.
    pub stranger_rejection_rate: f32,
}

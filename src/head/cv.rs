//! Choosing the L2 strength: stratified k-fold cross-validation along the strength path, scored
//! by pooled out-of-fold log loss ([`CvReport`], one [`CvPoint`] per strength).
use ndarray::Array2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::lbfgs::SolverStats;
use super::objective::{argmax, Trainer};
use super::params::{ClassWeight, Scaling, SoftmaxValidParams};

/// Cross-validation result of one L2 strength.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvPoint {
    /// The strength.
    pub l2: f32,
    /// Out-of-fold log loss, pooled over all training samples (lower is better).
    pub log_loss: f64,
    /// Out-of-fold accuracy, pooled.
    pub accuracy: f64,
    /// Log loss of each fold.
    pub fold_log_loss: Vec<f64>,
    /// Accuracy of each fold.
    pub fold_accuracy: Vec<f64>,
    /// L-BFGS iterations, summed over folds.
    pub iterations: usize,
    /// Whether every fold's fit converged.
    pub converged: bool,
}

/// How the L2 strength was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvReport {
    /// Selection criterion: always `"log_loss"` (pooled out-of-fold; ties go to the stronger
    /// penalty).
    pub criterion: String,
    /// Folds used.
    pub folds: usize,
    /// Folds asked for.
    pub folds_requested: usize,
    /// Things a user should know: folds reduced, strength chosen at the edge of the grid.
    pub notes: Vec<String>,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Class weighting used in every fit.
    pub class_weight: ClassWeight,
    /// Every strength tried, strong to weak.
    pub grid: Vec<CvPoint>,
    /// The strength chosen.
    pub chosen_l2: f32,
    /// The feature scaling chosen with the strength (lowest log loss; ties go to the first tried,
    /// `feature`).
    #[serde(default)]
    pub scaling: Scaling,
    /// Every feature scaling and part weighting tried, each with its best pooled out-of-fold log
    /// loss (empty when only one was tried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CvCandidate>,
    /// The part weights chosen (lowest log loss; ties go to equal weights, tried first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_weights: Vec<f32>,
}

/// One feature scaling and part weighting tried by the cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvCandidate {
    /// The scaling.
    pub scaling: Scaling,
    /// A fused model's part weights (empty for one model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_weights: Vec<f32>,
    /// The best pooled out-of-fold log loss over the grid of strengths.
    pub log_loss: f64,
}

/// Chooses the L2 strength from `grid` (sorted strong to weak, no duplicates) by stratified
/// cross-validation on the trainer's rows. `smallest` is the smallest class and its count (at least
/// 2): the folds are reduced to it, with a note. Returns the strength, the mean of the folds'
/// parameters there (to start the refit from), and the report.
pub(super) fn choose_l2(
    trainer: &Trainer,
    params: &SoftmaxValidParams,
    grid: &[f32],
    smallest: (usize, usize),
    groups: Option<&[usize]>,
) -> (f32, Vec<f32>, CvReport) {
    let (fold_of, folds, mut notes) = fold_plan(trainer.y, groups, params, smallest);
    let (points, mut mean_theta) = cross_validate(trainer, &fold_of, folds, grid);
    let mut best = 0;
    for (i, p) in points.iter().enumerate() {
        if p.log_loss < points[best].log_loss {
            best = i;
        }
    }
    if best == 0 || best + 1 == points.len() {
        notes.push(format!(
            "the chosen L2 strength {} is the {} in the grid; a grid reaching further that way may do better",
            points[best].l2,
            if best == 0 { "strongest" } else { "weakest" }
        ));
    }
    let report = CvReport {
        criterion: "log_loss".into(),
        folds,
        folds_requested: params.folds,
        notes,
        seed: params.seed,
        class_weight: params.class_weight,
        chosen_l2: points[best].l2,
        grid: points,
        scaling: Scaling::default(),
        candidates: Vec::new(),
        part_weights: Vec::new(),
    };
    (grid[best], mean_theta.swap_remove(best), report)
}

/// The folds of the cross-validation: stratified, and with `groups` (a near-duplicate group id
/// per row) every group in one fold, so the strength is chosen on images unlike those it was
/// trained on. Folds are reduced to the smallest class's count (of groups, when grouped), with a
/// note; when some class is a single group, the folds cannot keep groups apart and say so.
pub(super) fn fold_plan(
    y: &[usize],
    groups: Option<&[usize]>,
    params: &SoftmaxValidParams,
    smallest: (usize, usize),
) -> (Vec<usize>, usize, Vec<String>) {
    let (min_class, min_count) = smallest;
    let mut notes = Vec::new();
    let grouped = groups.and_then(|g| {
        let classes = y.iter().max().map_or(0, |m| m + 1);
        let mut distinct = vec![std::collections::HashSet::new(); classes];
        for (&c, &u) in y.iter().zip(g) {
            distinct[c].insert(u);
        }
        let (c, n) = distinct
            .iter()
            .map(|d| d.len())
            .enumerate()
            .min_by_key(|&(_, n)| n)?;
        if n < 2 {
            notes.push(format!(
                "class {c}'s training images are all near-duplicates of one photo: the folds could not keep near-duplicates apart"
            ));
            return None;
        }
        Some((g, c, n))
    });
    let (folds, fold_of) = match grouped {
        Some((g, c, n)) => {
            let folds = params.folds.min(n);
            if folds < params.folds {
                notes.push(format!(
                    "folds reduced from {} to {folds}: class {c} has only {n} distinct photos (near-duplicate groups) in training",
                    params.folds
                ));
            }
            (
                folds,
                crate::shuffle::stratified_group_folds(y, g, folds, params.seed),
            )
        }
        None => {
            let folds = params.folds.min(min_count);
            if folds < params.folds {
                notes.push(format!(
                    "folds reduced from {} to {folds}: class {min_class} has only {min_count} training samples",
                    params.folds
                ));
            }
            (
                folds,
                crate::shuffle::stratified_folds(y, folds, params.seed),
            )
        }
    };
    (fold_of, folds, notes)
}

/// Runs every fold along the strength path (strong → weak, warm-started), in parallel.
/// Returns one point per strength and the mean of the folds' parameters at each strength, in the
/// coordinates of a fit on all rows (ready to start the refit from).
fn cross_validate(
    trainer: &Trainer,
    fold_of: &[usize],
    folds: usize,
    grid: &[f32],
) -> (Vec<CvPoint>, Vec<Vec<f32>>) {
    let y = trainer.y;
    let p = trainer.param_len(y.len());
    // Per fold, per strength: (sum of log loss, correct count, held-out count, stats, theta).
    type FoldOut = Vec<(f64, usize, usize, SolverStats, Vec<f32>)>;
    let per_fold: Vec<FoldOut> = (0..folds)
        .into_par_iter()
        .map(|f| {
            let train: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] != f).collect();
            let held: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] == f).collect();
            let part = trainer.part(&train, &held);
            let mut theta = vec![0.0f32; trainer.param_len(train.len())];
            grid.iter()
                .map(|&l2| {
                    let stats = trainer.solve(&part, l2, &mut theta);
                    let z = trainer.held_out_logits(&part, &theta);
                    let (loss, correct) = held_out_scores(z, &part.held_y);
                    let embedded = trainer.embed(&theta, &train);
                    (loss, correct, held.len(), stats, embedded)
                })
                .collect()
        })
        .collect();

    let n = y.len() as f64;
    let mut points = Vec::with_capacity(grid.len());
    let mut means = Vec::with_capacity(grid.len());
    for (j, &l2) in grid.iter().enumerate() {
        let mut loss = 0.0;
        let mut correct = 0;
        let mut point = CvPoint {
            l2,
            log_loss: 0.0,
            accuracy: 0.0,
            fold_log_loss: Vec::new(),
            fold_accuracy: Vec::new(),
            iterations: 0,
            converged: true,
        };
        let mut mean_theta = vec![0.0f32; p];
        for fold in &per_fold {
            let (l, c, m, stats, theta) = &fold[j];
            loss += l;
            correct += c;
            point.fold_log_loss.push(l / *m as f64);
            point.fold_accuracy.push(*c as f64 / *m as f64);
            point.iterations += stats.iterations;
            point.converged &= stats.converged;
            for (a, b) in mean_theta.iter_mut().zip(theta) {
                *a += b / folds as f32;
            }
        }
        point.log_loss = loss / n;
        point.accuracy = correct as f64 / n;
        points.push(point);
        means.push(mean_theta);
    }
    (points, means)
}

/// Summed log loss (probabilities clipped to [1e-15, 1]) and number of correct predictions, from
/// logits with the bias added.
fn held_out_scores(mut z: Array2<f32>, y: &[usize]) -> (f64, usize) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (mut row, &label) in z.rows_mut().into_iter().zip(y) {
        let r = row.as_slice_mut().expect("contiguous");
        if argmax(r) == label {
            correct += 1;
        }
        let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64 + r.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln();
        let logp = (r[label] as f64 - lse).max(1e-15f64.ln());
        loss -= logp;
    }
    (loss, correct)
}

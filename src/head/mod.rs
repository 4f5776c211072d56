//! Head: a multinomial logistic regression (softmax) on cached backbone features.
//!
//! The objective is the standard one, the same as `linfa-logistic`'s `MultiLogisticRegression` and
//! scikit-learn's multinomial `LogisticRegression` with `C = 1 / l2`:
//!
//! ```text
//! Σᵢ sᵢ · (−log softmax(W xᵢ + b)[yᵢ])  +  l2/2 · ‖W‖²        (the bias is not penalised)
//! ```
//!
//! on standardised features (the head stores the mean and scale and applies them when it
//! predicts); `sᵢ` is 1, or `n / (k · count(yᵢ))` with [`ClassWeight::Balanced`].
//!
//! The L2 strength is chosen by stratified k-fold cross-validation on the training data only
//! (lowest pooled out-of-fold log loss; ties go to the stronger penalty), then the head is refit on
//! all of it. The same cross-validation chooses how features are scaled ([`Scaling`]: each to
//! unit variance, or one scale per backbone, which keeps the backbone's geometry and does not
//! blow weak, noisy features up) and a fused model's part weights. Folds run in parallel with rayon; along each fold the strengths are fitted from strong
//! to weak, each starting from the previous solution; the refit starts from the mean of the folds'
//! solutions at the chosen strength. The solver is L-BFGS with a strong-Wolfe line search, in
//! `f32` with `f64` accumulation; each objective evaluation splits its rows into parallel chunks.
//! The features are standardised once, with the statistics of the whole training part (folds
//! share them, as with scikit-learn's `LogisticRegressionCV` on pre-scaled features; they use no
//! labels).
//!
//! [`SoftmaxParams`] is a `linfa` hyperparameter set ([`linfa::ParamGuard`]): it is checked before
//! any work, and [`linfa::traits::Fit`] fits it on a `DatasetBase<Array2<f32>, Array1<usize>>`.
//! The fitted [`SoftmaxHead`] implements [`linfa::traits::Predict`] (class indices) and
//! [`SoftmaxHead::predict_proba`].
//!
//! Two simpler heads, for `qcyn compare` to measure the softmax head against: [`centroid`]
//! (nearest class centroid, cosine) and [`knn`] (k-nearest neighbours, cosine); they share only
//! the errors and class weights of `params`.
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, PredictInplace};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayBase, ArrayView1, ArrayView2, Data, Ix2};
use serde::{Deserialize, Serialize};

// The data flows one way: `params` (hyperparameters, errors) and `lbfgs` (the solver, which
// knows nothing of heads) feed `objective` (the objective and the fits), which `cv` (choosing the
// strength) uses; this module ties them together.
pub mod centroid;
mod cv;
pub mod knn;
mod lbfgs;
mod objective;
mod params;

pub use cv::{CvCandidate, CvPoint, CvReport};
pub use lbfgs::SolverStats;
pub use params::{
    ClassWeight, HeadError, Scaling, SoftmaxParams, SoftmaxValidParams, DEFAULT_L2_GRID,
    DEFAULT_TOL, PART_WEIGHT_FACTORS,
};

use objective::{argmax, standardisation, standardise, Trainer};

/// A fitted softmax head: `softmax(W · (x − mean) / scale + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxHead {
    /// Number of classes.
    pub classes: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Per-feature mean subtracted before the linear map.
    pub mean: Vec<f32>,
    /// Per-feature scale divided by after the mean (1 for constant features).
    pub scale: Vec<f32>,
    /// Weights, row-major `classes × dim`, on standardised features.
    pub weights: Vec<f32>,
    /// Bias per class.
    pub bias: Vec<f32>,
    /// L2 strength it was trained with.
    pub l2: f32,
}

impl SoftmaxHead {
    /// Checks that the stored arrays agree with `classes` and `dim` and are finite (for a head read
    /// from disk). Returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let (k, d) = (self.classes, self.dim);
        if k == 0 || d == 0 {
            return Err(format!("head has {k} classes and dimension {d}"));
        }
        for (name, len, want) in [
            ("mean", self.mean.len(), d),
            ("scale", self.scale.len(), d),
            ("weights", self.weights.len(), k * d),
            ("bias", self.bias.len(), k),
        ] {
            if len != want {
                return Err(format!("head `{name}` has {len} values, expected {want}"));
            }
        }
        let all = self
            .mean
            .iter()
            .chain(&self.scale)
            .chain(&self.weights)
            .chain(&self.bias);
        if all.clone().any(|v| !v.is_finite()) {
            return Err("head holds a NaN or infinite value".into());
        }
        if self.scale.iter().any(|s| *s <= 0.0) {
            return Err("head `scale` must be positive".into());
        }
        Ok(())
    }

    /// Weights as a `classes × dim` view.
    pub fn weights_view(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.classes, self.dim), &self.weights).expect("validated head")
    }

    /// Raw scores `W · (x − mean) / scale + b`, one row per sample.
    pub fn decision_function(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, HeadError> {
        if x.ncols() != self.dim {
            return Err(HeadError::DimensionMismatch {
                expected: self.dim,
                found: x.ncols(),
            });
        }
        let mut xs = x.to_owned();
        for mut row in xs.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        let mut z = Array2::zeros((x.nrows(), self.classes));
        for mut row in z.rows_mut() {
            row.assign(&ArrayView1::from(&self.bias));
        }
        general_mat_mul(1.0, &xs, &self.weights_view().t(), 1.0, &mut z);
        Ok(z)
    }

    /// Probability of every class, one row per sample (rows sum to 1).
    ///
    /// # Panics
    /// When `x` does not have [`SoftmaxHead::dim`] columns; see [`SoftmaxHead::try_predict_proba`].
    pub fn predict_proba(&self, x: ArrayView2<f32>) -> Array2<f32> {
        self.try_predict_proba(x).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Probability of every class, one row per sample, or an error on a dimension mismatch.
    pub fn try_predict_proba(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, HeadError> {
        let mut z = self.decision_function(x)?;
        for mut row in z.rows_mut() {
            softmax_in_place(row.as_slice_mut().expect("contiguous row"));
        }
        Ok(z)
    }
}

fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

impl<D: Data<Elem = f32>> PredictInplace<ArrayBase<D, Ix2>, Array1<usize>> for SoftmaxHead {
    /// The most probable class of each row.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<usize>) {
        assert_eq!(x.nrows(), y.len(), "one output per sample");
        let z = self
            .decision_function(x.view())
            .unwrap_or_else(|e| panic!("{e}"));
        for (row, out) in z.rows().into_iter().zip(y.iter_mut()) {
            *out = argmax(row.as_slice().expect("contiguous row"));
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<usize> {
        Array1::zeros(x.nrows())
    }
}

impl<D: Data<Elem = f32>> PredictInplace<ArrayBase<D, Ix2>, Array1<usize>> for HeadFit {
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<usize>) {
        self.head.predict_inplace(x, y)
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<usize> {
        Array1::zeros(x.nrows())
    }
}

/// The result of fitting: the head, how its strength was chosen, and how the final fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadFit {
    /// The fitted head (refit on all training samples).
    pub head: SoftmaxHead,
    /// Cross-validation report; `None` when a single strength was given.
    pub cv: Option<CvReport>,
    /// The final fit's solver statistics.
    pub refit: SolverStats,
}

impl<D: Data<Elem = f32>, T: AsSingleTargets<Elem = usize>> Fit<ArrayBase<D, Ix2>, T, HeadError>
    for SoftmaxValidParams
{
    type Object = HeadFit;

    fn fit(&self, dataset: &DatasetBase<ArrayBase<D, Ix2>, T>) -> Result<HeadFit, HeadError> {
        let y = dataset.targets().as_single_targets();
        let labels: Vec<usize> = y.iter().copied().collect();
        fit(dataset.records().view(), &labels, self)
    }
}

/// The part weights tried for `parts` parts: all 1 first, then each part at each of
/// [`PART_WEIGHT_FACTORS`] with the others at 1 (none for fewer than two parts).
fn part_weight_candidates(parts: usize) -> Vec<Vec<f32>> {
    if parts < 2 {
        return vec![vec![1.0; parts]];
    }
    let mut out = vec![vec![1.0; parts]];
    for k in 0..parts {
        for &f in &params::PART_WEIGHT_FACTORS {
            let mut w = vec![1.0; parts];
            w[k] = f;
            out.push(w);
        }
    }
    out
}

/// The scale each feature is divided by: its own standard deviation (`sd`, 0 for a constant
/// feature, which is then left unscaled) with [`Scaling::Feature`], or its part's root mean
/// square of them with [`Scaling::Part`]; then divided by its part's weight. `dims` are a fused
/// model's part dimensions (empty: one part, weight 1).
fn scale_of(sd: &[f32], scaling: Scaling, dims: &[usize], weights: &[f32]) -> Vec<f32> {
    let whole = [sd.len()];
    let (dims, weights) = if dims.is_empty() {
        (&whole[..], &[1.0f32][..])
    } else {
        (dims, weights)
    };
    let mut scale = sd.to_vec();
    let mut start = 0;
    for (&len, &w) in dims.iter().zip(weights) {
        let part = &mut scale[start..start + len];
        match scaling {
            Scaling::Feature => part
                .iter_mut()
                .filter(|s| **s <= 0.0)
                .for_each(|s| *s = 1.0),
            Scaling::Part => {
                let ms = part.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>()
                    / part.len().max(1) as f64;
                let rms = ms.sqrt() as f32;
                part.fill(if rms > 0.0 { rms } else { 1.0 });
            }
        }
        part.iter_mut().for_each(|s| *s /= w);
        start += len;
    }
    scale
}

/// The best candidate of [`fit_grouped`]'s cross-validation so far: its pooled log loss, scale,
/// standardised features, strength, starting point for the refit, and report.
struct Best {
    loss: f64,
    scale: Vec<f32>,
    xs: Array2<f32>,
    l2: f32,
    init: Vec<f32>,
    report: CvReport,
}

/// Fits a head on features `x` (one row per sample) with labels `y` (class indices): chooses the
/// L2 strength by cross-validation when the grid has several, then refits on everything.
pub fn fit(
    x: ArrayView2<f32>,
    y: &[usize],
    params: &SoftmaxValidParams,
) -> Result<HeadFit, HeadError> {
    fit_grouped(x, y, None, params)
}

/// Like [`fit`], with a near-duplicate group id per row (`groups`): the cross-validation that
/// chooses the L2 strength keeps every group in one fold ([`crate::shuffle::stratified_group_folds`]),
/// so copies of one photo never score each other.
pub fn fit_grouped(
    x: ArrayView2<f32>,
    y: &[usize],
    groups: Option<&[usize]>,
    params: &SoftmaxValidParams,
) -> Result<HeadFit, HeadError> {
    if let Some(g) = groups {
        assert_eq!(g.len(), y.len(), "one group id per row");
    }
    let (n, d) = x.dim();
    let k = params
        .n_classes
        .unwrap_or_else(|| y.iter().max().map_or(0, |m| m + 1));
    let counts = params::check_rows(x, y, k)?;
    let mut grid = params.l2_grid.clone();
    grid.sort_by(|a, b| b.total_cmp(a));
    grid.dedup();
    let cv_wanted = grid.len() > 1;
    let (min_class, min_count) = counts
        .iter()
        .copied()
        .enumerate()
        .min_by_key(|&(_, c)| c)
        .expect("k > 0");
    let needed = if cv_wanted { 2 } else { 1 };
    if min_count < needed {
        let why = if cv_wanted {
            " to cross-validate (one to hold out, one to train)"
        } else {
            ""
        };
        return Err(HeadError::ClassTooSmall {
            class: min_class,
            count: min_count,
            needed,
            why: why.into(),
        });
    }

    let (mean, sd) = standardisation(x);
    let dims = &params.part_dims;
    if !dims.is_empty() && dims.iter().sum::<usize>() != d {
        return Err(HeadError::PartDims {
            dims: dims.clone(),
            sum: dims.iter().sum(),
            dim: d,
        });
    }
    // The feature scalings and a fused model's part weightings: each pair tried by the same
    // cross-validation (ties go to the first: per-feature scaling, equal weights); a part's
    // weight divides its features' scale, so the head applies it when it predicts.
    let weightings = match &params.part_weights {
        Some(w) if w.len() == dims.len() => vec![w.clone()],
        Some(w) => {
            return Err(HeadError::PartWeights {
                weights: w.len(),
                parts: dims.len(),
            })
        }
        None => part_weight_candidates(dims.len()),
    };
    let candidates: Vec<(Scaling, &Vec<f32>)> = params
        .scalings
        .iter()
        .flat_map(|&sc| weightings.iter().map(move |w| (sc, w)))
        .collect();
    // Each candidate's cross-validation runs once; the best one's features, strength, starting
    // point and report are kept for the refit.
    let standardised = |sc: Scaling, w: &[f32]| {
        let scale = scale_of(&sd, sc, dims, w);
        let xs = standardise(x, &mean, &scale);
        (scale, xs)
    };
    let mut tried = Vec::new();
    let mut best: Option<Best> = None;
    if cv_wanted {
        for &(sc, w) in &candidates {
            let (scale, xs) = standardised(sc, w);
            let trainer = Trainer::new(&xs, y, k, params);
            let (l2, init, mut report) =
                cv::choose_l2(&trainer, params, &grid, (min_class, min_count), groups);
            let loss = report
                .grid
                .iter()
                .map(|p| p.log_loss)
                .fold(f64::INFINITY, f64::min);
            let part_weights = if dims.is_empty() {
                Vec::new()
            } else {
                w.clone()
            };
            tried.push(CvCandidate {
                scaling: sc,
                part_weights: part_weights.clone(),
                log_loss: loss,
            });
            if best.as_ref().is_none_or(|b| loss < b.loss) {
                report.scaling = sc;
                report.part_weights = part_weights;
                best = Some(Best {
                    loss,
                    scale,
                    xs,
                    l2,
                    init,
                    report,
                });
            }
        }
    }
    let (scale, xs, chosen, init, cv) = match best {
        Some(mut b) => {
            if tried.len() > 1 {
                b.report.candidates = tried;
            }
            (b.scale, b.xs, b.l2, Some(b.init), Some(b.report))
        }
        None => {
            let (scale, xs) = standardised(candidates[0].0, candidates[0].1);
            (scale, xs, grid[0], None, None)
        }
    };
    let trainer = Trainer::new(&xs, y, k, params);

    let all: Vec<usize> = (0..n).collect();
    let part = trainer.part(&all, &[]);
    let mut theta = init.unwrap_or_else(|| vec![0.0; trainer.param_len(n)]);
    let refit = trainer.solve(&part, chosen, &mut theta);
    let (weights, bias) = trainer.weights_and_bias(&part, &theta);
    let head = SoftmaxHead {
        classes: k,
        dim: d,
        mean,
        scale,
        weights,
        bias,
        l2: chosen,
    };
    Ok(HeadFit { head, cv, refit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::ParamGuard;
    use rand::{Rng, SeedableRng};

    #[test]
    fn scale_of_keeps_each_part_whole_or_scales_each_feature() {
        let sd = [1.0, 3.0, 0.0, 2.0, 2.0];
        // Per feature: a constant feature (sd 0) is left unscaled.
        assert_eq!(
            scale_of(&sd, Scaling::Feature, &[], &[]),
            vec![1.0, 3.0, 1.0, 2.0, 2.0]
        );
        // One part: one scale, the root mean square of the five (sqrt(18/5)).
        let whole = scale_of(&sd, Scaling::Part, &[], &[]);
        assert!(
            whole.iter().all(|s| (s - 1.897_366_6).abs() < 1e-5),
            "{whole:?}"
        );
        // Two parts, the second weighted 2: each part its own scale, divided by its weight.
        let parts = scale_of(&sd, Scaling::Part, &[3, 2], &[1.0, 2.0]);
        let first = (10.0f32 / 3.0).sqrt();
        assert!(
            parts[..3].iter().all(|s| (s - first).abs() < 1e-5),
            "{parts:?}"
        );
        assert!(
            parts[3..].iter().all(|s| (s - 1.0).abs() < 1e-6),
            "{parts:?}"
        );
    }

    /// Two classes told apart by 4 strong features, with 200 features of tiny noise: scaling each
    /// feature to unit variance blows the noise up to the size of the signal, so the
    /// cross-validation must prefer one scale for the whole vector, and say so.
    #[test]
    fn cross_validation_chooses_the_part_scaling_when_weak_features_are_noise() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (n, d) = (60, 204);
        let mut x = Array2::<f32>::zeros((n, d));
        let y: Vec<usize> = (0..n).map(|i| i % 2).collect();
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if j < 4 {
                    rng.gen_range(-1.0..1.0) + if y[i] == 1 { 1.2 } else { -1.2 }
                } else {
                    rng.gen_range(-1e-3..1e-3)
                };
            }
        }
        let params = SoftmaxParams::new().check().unwrap();
        let fit = fit(x.view(), &y, &params).unwrap();
        let cv = fit.cv.expect("cross-validated");
        assert_eq!(cv.scaling, Scaling::Part, "{:?}", cv.candidates);
        assert_eq!(cv.candidates.len(), 2);
        let loss = |s| {
            cv.candidates
                .iter()
                .find(|c| c.scaling == s)
                .unwrap()
                .log_loss
        };
        assert!(loss(Scaling::Part) < loss(Scaling::Feature));
        // The head applies the chosen scaling when it predicts: one scale for every feature.
        let s0 = fit.head.scale[0];
        assert!(fit.head.scale.iter().all(|s| (s - s0).abs() < 1e-6));
        // Asked for per-feature scaling only, it is used and nothing else is tried.
        let only = SoftmaxParams::new()
            .scalings(vec![Scaling::Feature])
            .check()
            .unwrap();
        let cv = super::fit(x.view(), &y, &only).unwrap().cv.unwrap();
        assert_eq!(cv.scaling, Scaling::Feature);
        assert!(cv.candidates.is_empty());
    }

    /// What the grouped estimate's folds refit with: the scaling and part weights a fit chose,
    /// fixed, so nothing else is tried; weights that do not match the parts are an error.
    #[test]
    fn a_fixed_choice_is_used_as_given() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let y: Vec<usize> = (0..30).map(|i| i % 2).collect();
        let x = Array2::from_shape_fn((30, 6), |(i, j)| {
            rng.gen_range(-1.0f32..1.0) + if j == 0 { y[i] as f32 } else { 0.0 }
        });
        let fused = SoftmaxParams::new().part_dims(vec![2, 4]).check().unwrap();
        let chosen = fused.with_choice(Scaling::Part, &[1.0, 4.0]);
        let cv = fit(x.view(), &y, &chosen).unwrap().cv.unwrap();
        assert_eq!(cv.scaling, Scaling::Part);
        assert_eq!(cv.part_weights, vec![1.0, 4.0]);
        assert!(cv.candidates.is_empty(), "{:?}", cv.candidates);
        let bad = fused.with_choice(Scaling::Feature, &[1.0, 2.0, 4.0]);
        let err = fit(x.view(), &y, &bad).unwrap_err();
        assert!(
            matches!(
                err,
                HeadError::PartWeights {
                    weights: 3,
                    parts: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn no_scaling_to_try_is_refused_before_any_work() {
        let err = SoftmaxParams::new()
            .scalings(Vec::new())
            .check()
            .unwrap_err();
        assert!(matches!(err, HeadError::NoScaling), "{err}");
    }
}

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
//! all of it. Folds run in parallel with rayon; along each fold the strengths are fitted from strong
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
use linfa::dataset::{AsSingleTargets, DatasetBase};
use linfa::traits::{Fit, PredictInplace};
use linfa::ParamGuard;
use ndarray::linalg::general_mat_mul;
use ndarray::{
    s, Array1, Array2, ArrayBase, ArrayView1, ArrayView2, ArrayViewMut2, Axis, CowArray, Data, Ix2,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Default grid of L2 strengths (`l2`, i.e. `1 / C` in scikit-learn's terms), strong to weak:
/// `C` from 0.01 to 100 around scikit-learn's default `C = 1`.
pub const DEFAULT_L2_GRID: [f32; 5] = [100.0, 10.0, 1.0, 0.1, 0.01];

/// Default gradient tolerance: ten times tighter than scikit-learn's `tol=1e-4` (same meaning), as
/// weakly regularised fits otherwise stop early enough to change which strength wins.
pub const DEFAULT_TOL: f32 = 1e-5;

/// How training samples are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every sample counts once.
    #[default]
    None,
    /// A sample of class `c` counts `n / (k · count_c)`, so every class weighs the same in total
    /// (scikit-learn's `class_weight="balanced"`).
    Balanced,
}

/// What is wrong with a head's hyperparameters or training data. Variants carry the numbers.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The grid of L2 strengths is empty.
    #[error("the grid of L2 strengths is empty")]
    EmptyGrid,
    /// An L2 strength is negative, NaN or infinite.
    #[error("L2 strength {0} is invalid: it must be finite and at least 0")]
    InvalidStrength(f32),
    /// Fewer than 2 folds were asked for.
    #[error("cross-validation needs at least 2 folds, got {0}")]
    TooFewFolds(usize),
    /// The gradient tolerance is not a positive number.
    #[error("gradient tolerance {0} is invalid: it must be finite and positive")]
    InvalidTolerance(f32),
    /// `max_iter` is zero.
    #[error("max_iter must be at least 1")]
    ZeroIterations,
    /// Features and labels differ in length.
    #[error("{0} feature rows but {1} labels")]
    MismatchedShapes(usize, usize),
    /// There is nothing to train on.
    #[error("no training samples")]
    NoSamples,
    /// A feature is NaN or infinite.
    #[error("feature {col} of sample {row} is {value}")]
    NonFinite {
        /// Sample (row) index.
        row: usize,
        /// Feature (column) index.
        col: usize,
        /// The value found.
        value: f32,
    },
    /// A label is not below the number of classes.
    #[error("label {label} of sample {row} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Sample index.
        row: usize,
        /// The label found.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A class has fewer training samples than the fit needs.
    #[error("class {class} has {count} training sample(s); {needed} are needed{why}")]
    ClassTooSmall {
        /// Class index.
        class: usize,
        /// Its number of training samples.
        count: usize,
        /// How many are needed.
        needed: usize,
        /// Why, for people (may be empty).
        why: String,
    },
    /// Prediction features have another dimension than the head was trained on.
    #[error("features have dimension {found} but the head was trained on {expected}")]
    DimensionMismatch {
        /// The head's dimension.
        expected: usize,
        /// The features' dimension.
        found: usize,
    },
    /// An error reported by linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

impl From<HeadError> for crate::Error {
    fn from(e: HeadError) -> Self {
        let hint = match &e {
            HeadError::ClassTooSmall { .. } => Some("add images to that class, or use fewer --folds".to_string()),
            HeadError::NonFinite { .. } => {
                Some("the feature cache may be damaged: re-run `qcyn extract` (damaged entries are recomputed)".into())
            }
            HeadError::DimensionMismatch { .. } => Some("use the model the head was trained with".into()),
            _ => None,
        };
        crate::Error::config(format!("softmax head: {e}"), hint)
    }
}

/// Hyperparameters of the softmax head, checked (see [`SoftmaxParams`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxValidParams {
    l2_grid: Vec<f32>,
    folds: usize,
    class_weight: ClassWeight,
    seed: u64,
    max_iter: usize,
    tol: f32,
    n_classes: Option<usize>,
}

impl SoftmaxValidParams {
    /// L2 strengths tried, as given.
    pub fn l2_grid(&self) -> &[f32] {
        &self.l2_grid
    }
    /// Number of cross-validation folds asked for.
    pub fn folds(&self) -> usize {
        self.folds
    }
    /// Class weighting.
    pub fn class_weight(&self) -> ClassWeight {
        self.class_weight
    }
    /// Seed of the fold assignment.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Maximum L-BFGS iterations per fit.
    pub fn max_iter(&self) -> usize {
        self.max_iter
    }
    /// Gradient tolerance (max-abs gradient of the per-sample mean objective).
    pub fn tol(&self) -> f32 {
        self.tol
    }
}

/// Hyperparameters of the softmax head (unchecked builder; a [`linfa::ParamGuard`]).
///
/// Defaults: grid [`DEFAULT_L2_GRID`], 5 folds, no class weights, seed 0, at most 300 L-BFGS
/// iterations per fit, gradient tolerance [`DEFAULT_TOL`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxParams(SoftmaxValidParams);

impl Default for SoftmaxParams {
    fn default() -> Self {
        SoftmaxParams(SoftmaxValidParams {
            l2_grid: DEFAULT_L2_GRID.to_vec(),
            folds: 5,
            class_weight: ClassWeight::None,
            seed: 0,
            max_iter: 300,
            tol: DEFAULT_TOL,
            n_classes: None,
        })
    }
}

impl SoftmaxParams {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// L2 strengths to cross-validate (`l2 = 1/C`). With a single value no cross-validation runs.
    pub fn l2_grid(mut self, grid: Vec<f32>) -> Self {
        self.0.l2_grid = grid;
        self
    }
    /// A single L2 strength: no cross-validation.
    pub fn l2(self, l2: f32) -> Self {
        self.l2_grid(vec![l2])
    }
    /// Number of stratified folds (reduced, with a note, to the smallest class's count).
    pub fn folds(mut self, folds: usize) -> Self {
        self.0.folds = folds;
        self
    }
    /// Class weighting.
    pub fn class_weight(mut self, class_weight: ClassWeight) -> Self {
        self.0.class_weight = class_weight;
        self
    }
    /// Seed of the fold assignment.
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
    /// Maximum L-BFGS iterations per fit.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.0.max_iter = max_iter;
        self
    }
    /// Stop when every gradient component of the per-sample mean objective is below this.
    pub fn tol(mut self, tol: f32) -> Self {
        self.0.tol = tol;
        self
    }
    /// Number of classes, when some may be absent from the labels (they are then an error).
    /// Default: the largest label + 1.
    pub fn n_classes(mut self, n: usize) -> Self {
        self.0.n_classes = Some(n);
        self
    }
}

impl ParamGuard for SoftmaxParams {
    type Checked = SoftmaxValidParams;
    type Error = HeadError;

    fn check_ref(&self) -> Result<&SoftmaxValidParams, HeadError> {
        let p = &self.0;
        if p.l2_grid.is_empty() {
            return Err(HeadError::EmptyGrid);
        }
        if let Some(&bad) = p.l2_grid.iter().find(|a| !a.is_finite() || **a < 0.0) {
            return Err(HeadError::InvalidStrength(bad));
        }
        if p.l2_grid.len() > 1 && p.folds < 2 {
            return Err(HeadError::TooFewFolds(p.folds));
        }
        if !(p.tol.is_finite() && p.tol > 0.0) {
            return Err(HeadError::InvalidTolerance(p.tol));
        }
        if p.max_iter == 0 {
            return Err(HeadError::ZeroIterations);
        }
        Ok(p)
    }

    fn check(self) -> Result<SoftmaxValidParams, HeadError> {
        self.check_ref()?;
        Ok(self.0)
    }
}

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

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

/// How one L-BFGS run ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SolverStats {
    /// Iterations taken.
    pub iterations: usize,
    /// Objective and gradient evaluations.
    pub evaluations: usize,
    /// Final objective (per-sample mean).
    pub objective: f64,
    /// Largest absolute gradient component at the end.
    pub grad_max: f32,
    /// Whether the gradient tolerance (or the relative-decrease test) was met.
    pub converged: bool,
}

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

/// Fits a head on features `x` (one row per sample) with labels `y` (class indices): chooses the
/// L2 strength by cross-validation when the grid has several, then refits on everything.
pub fn fit(
    x: ArrayView2<f32>,
    y: &[usize],
    params: &SoftmaxValidParams,
) -> Result<HeadFit, HeadError> {
    let (n, d) = x.dim();
    if n != y.len() {
        return Err(HeadError::MismatchedShapes(n, y.len()));
    }
    if n == 0 || d == 0 {
        return Err(HeadError::NoSamples);
    }
    for (row, r) in x.rows().into_iter().enumerate() {
        if let Some(col) = r.iter().position(|v| !v.is_finite()) {
            return Err(HeadError::NonFinite {
                row,
                col,
                value: r[col],
            });
        }
    }
    let k = params
        .n_classes
        .unwrap_or_else(|| y.iter().max().map_or(0, |m| m + 1));
    let mut counts = vec![0usize; k];
    for (row, &label) in y.iter().enumerate() {
        if label >= k {
            return Err(HeadError::LabelOutOfRange {
                row,
                label,
                classes: k,
            });
        }
        counts[label] += 1;
    }
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

    let (mean, scale) = standardisation(x);
    let xs = standardise(x, &mean, &scale);

    let trainer = Trainer::new(&xs, y, k, params);
    let (chosen, init, cv) = if cv_wanted {
        let folds = params.folds.min(min_count);
        let mut notes = Vec::new();
        if folds < params.folds {
            notes.push(format!(
                "folds reduced from {} to {folds}: class {min_class} has only {min_count} training samples",
                params.folds
            ));
        }
        let fold_of = stratified_folds(y, k, folds, params.seed);
        let (points, mean_theta) = cross_validate(&trainer, &fold_of, folds, &grid);
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
        };
        (grid[best], Some(mean_theta[best].clone()), Some(report))
    } else {
        (grid[0], None, None)
    };

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

/// Per-feature mean and population standard deviation (1 where a feature is constant).
fn standardisation(x: ArrayView2<f32>) -> (Vec<f32>, Vec<f32>) {
    let n = x.nrows() as f64;
    let d = x.ncols();
    let mut sum = vec![0.0f64; d];
    for row in x.rows() {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += *v as f64;
        }
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let mut var = vec![0.0f64; d];
    for row in x.rows() {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            let c = *v as f64 - m;
            *s += c * c;
        }
    }
    let scale = var
        .iter()
        .zip(&mean)
        .map(|(v, m)| {
            let sd = (v / n).sqrt();
            // A feature that is constant (up to rounding) carries no information: leave it unscaled.
            if sd <= 1e-6 * m.abs().max(1e-6) {
                1.0
            } else {
                sd as f32
            }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), scale)
}

fn standardise(x: ArrayView2<f32>, mean: &[f32], scale: &[f32]) -> Array2<f32> {
    let mut xs = x.as_standard_layout().into_owned();
    let d = mean.len();
    xs.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(d)
        .for_each(|row| {
            for ((v, m), s) in row.iter_mut().zip(mean).zip(scale) {
                *v = (*v - m) / s;
            }
        });
    xs
}

/// Assigns each sample to a fold: per class, a seeded shuffle dealt round-robin, continuing where
/// the previous class stopped so that fold sizes stay within one of each other.
fn stratified_folds(y: &[usize], k: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_of = vec![0; y.len()];
    let mut next = 0;
    for c in 0..k {
        let mut members: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
        members.shuffle(&mut rng);
        for i in members {
            fold_of[i] = next;
            next = (next + 1) % folds;
        }
    }
    fold_of
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

/// Sample weights (see [`ClassWeight`]) and their sum.
fn sample_weights(y: &[usize], k: usize, cw: ClassWeight) -> (Vec<f32>, f64) {
    let n = y.len();
    let sw = match cw {
        ClassWeight::None => vec![1.0; n],
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; k];
            for &c in y {
                counts[c] += 1;
            }
            let present = counts.iter().filter(|&&c| c > 0).count();
            y.iter()
                .map(|&c| n as f32 / (present * counts[c]) as f32)
                .collect()
        }
    };
    let s = sw.iter().map(|&v| v as f64).sum();
    (sw, s)
}

/// Turns logits `z` (rows × k, bias not yet added) into weighted residuals `sᵢ (pᵢ − e_yᵢ)` in
/// place, adds their column sums to `gb`, and returns `Σ sᵢ CEᵢ`.
fn residuals(z: &mut [f32], b: &[f32], y: &[usize], sw: &[f32], k: usize, gb: &mut [f64]) -> f64 {
    let mut loss = 0.0f64;
    for ((r, &label), &s) in z.chunks_exact_mut(k).zip(y).zip(sw) {
        let mut max = f32::NEG_INFINITY;
        for (v, bj) in r.iter_mut().zip(b) {
            *v += bj;
            max = max.max(*v);
        }
        let mut sum = 0.0f32;
        for v in r.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        // −log p_label = log Σ exp(z − max) − (z_label − max)
        loss += s as f64 * ((sum as f64).ln() - (r[label] as f64).ln());
        let inv = s / sum;
        for (j, v) in r.iter_mut().enumerate() {
            *v *= inv;
            if j == label {
                *v -= s;
            }
            gb[j] += *v as f64;
        }
    }
    loss
}

/// `out = a · b`, with the rows of `a` (and `out`) split into chunks run in parallel.
fn par_gemm(a: ArrayView2<f32>, b: ArrayView2<f32>, out: &mut ArrayViewMut2<f32>) {
    let rows = a.nrows();
    let chunk = rows.div_ceil(2 * rayon::current_num_threads()).max(64);
    let pairs: Vec<_> = a
        .axis_chunks_iter(Axis(0), chunk)
        .zip(out.axis_chunks_iter_mut(Axis(0), chunk))
        .collect();
    pairs.into_par_iter().for_each(|(ac, mut oc)| {
        general_mat_mul(1.0, &ac, &b, 0.0, &mut oc);
    });
}

/// Everything the fits of one training run share: the standardised features, the labels, and,
/// when there are fewer than twice as many samples as features, their Gram matrix `X Xᵀ`.
///
/// In the Gram form the weights are kept as `W = Aᵀ X` (`A`: one row of `k` coefficients per
/// training sample). At an L2 optimum `W` lies in the span of the training rows, and L-BFGS started
/// there never leaves it, so this is the same problem and, with the metric `⟨U, V⟩ = tr(Uᵀ K V)`,
/// the very same iterates — but each iteration costs one `n × n × k` product instead of two
/// `n × d × k` ones, and line-search steps cost almost nothing.
struct Trainer<'a> {
    xs: &'a Array2<f32>,
    y: &'a [usize],
    k: usize,
    gram: Option<Array2<f32>>,
    params: &'a SoftmaxValidParams,
}

/// The matrices of one fit: its training rows, and the held-out rows to score, if any.
struct Part<'a> {
    /// Training rows of the standardised features.
    x: CowArray<'a, f32, Ix2>,
    y: Vec<usize>,
    /// Gram matrix of the training rows (Gram form).
    gram: Option<CowArray<'a, f32, Ix2>>,
    /// Held-out rows: features (primal form) or their products with the training rows (Gram).
    held: Array2<f32>,
    held_y: Vec<usize>,
}

impl<'a> Trainer<'a> {
    fn new(xs: &'a Array2<f32>, y: &'a [usize], k: usize, params: &'a SoftmaxValidParams) -> Self {
        let (n, d) = xs.dim();
        let gram = (n < 2 * d).then(|| {
            let mut g = Array2::zeros((n, n));
            par_gemm(xs.view(), xs.t(), &mut g.view_mut());
            g
        });
        Trainer {
            xs,
            y,
            k,
            gram,
            params,
        }
    }

    /// Length of the parameter vector of a fit on `rows` training rows.
    fn param_len(&self, rows: usize) -> usize {
        match self.gram {
            Some(_) => rows * self.k + self.k,
            None => self.k * (self.xs.ncols() + 1),
        }
    }

    /// The matrices for training on `train` and scoring `held` (both sorted row indices).
    fn part(&self, train: &[usize], held: &[usize]) -> Part<'_> {
        let everything = train.len() == self.xs.nrows();
        let x = if everything {
            CowArray::from(self.xs.view())
        } else {
            CowArray::from(self.xs.select(Axis(0), train))
        };
        let gram = self.gram.as_ref().map(|g| {
            if everything {
                CowArray::from(g.view())
            } else {
                CowArray::from(g.select(Axis(0), train).select(Axis(1), train))
            }
        });
        let held_m = match &self.gram {
            Some(g) => g.select(Axis(0), held).select(Axis(1), train),
            None => self.xs.select(Axis(0), held),
        };
        Part {
            x,
            y: train.iter().map(|&i| self.y[i]).collect(),
            gram,
            held: held_m,
            held_y: held.iter().map(|&i| self.y[i]).collect(),
        }
    }

    /// Minimises the objective at strength `l2` on `part`, from `theta` (updated).
    fn solve(&self, part: &Part, l2: f32, theta: &mut [f32]) -> SolverStats {
        let (sw, s) = sample_weights(&part.y, self.k, self.params.class_weight);
        let (max_iter, tol) = (self.params.max_iter, self.params.tol as f64);
        match &part.gram {
            Some(g) => {
                let mut obj = GramLine::new(g.view(), part.x.view(), &part.y, &sw, self.k, s, l2);
                lbfgs::minimize(&mut obj, theta, max_iter, tol)
            }
            None => {
                let problem = Problem {
                    x: part.x.view(),
                    y: &part.y,
                    sw: &sw,
                    k: self.k,
                    inv_s: 1.0 / s,
                    l2_over_s: l2 as f64 / s,
                };
                let mut obj = lbfgs::Closure::new(|t: &[f32], g: &mut [f32]| problem.eval(t, g));
                lbfgs::minimize(&mut obj, theta, max_iter, tol)
            }
        }
    }

    /// Logits (bias added) of the held-out rows of `part`.
    fn held_out_logits(&self, part: &Part, theta: &[f32]) -> Array2<f32> {
        let k = self.k;
        let m = part.held.nrows();
        let split = theta.len() - k;
        let mut z = Array2::zeros((m, k));
        match part.gram {
            Some(_) => {
                let a = ArrayView2::from_shape((part.x.nrows(), k), &theta[..split]).expect("A");
                general_mat_mul(1.0, &part.held, &a, 0.0, &mut z);
            }
            None => {
                let w = ArrayView2::from_shape((k, self.xs.ncols()), &theta[..split]).expect("W");
                general_mat_mul(1.0, &part.held, &w.t(), 0.0, &mut z);
            }
        }
        for mut row in z.rows_mut() {
            row += &ArrayView1::from(&theta[split..]);
        }
        z
    }

    /// `theta` of a fit on `train` rows, in the coordinates of a fit on all rows.
    fn embed(&self, theta: &[f32], train: &[usize]) -> Vec<f32> {
        let k = self.k;
        match self.gram {
            None => theta.to_vec(),
            Some(_) => {
                let n = self.xs.nrows();
                let mut out = vec![0.0f32; n * k + k];
                for (j, &i) in train.iter().enumerate() {
                    out[i * k..(i + 1) * k].copy_from_slice(&theta[j * k..(j + 1) * k]);
                }
                out[n * k..].copy_from_slice(&theta[train.len() * k..]);
                out
            }
        }
    }

    /// The head's weights (`k × d`, row-major) and bias from a fit's parameters.
    fn weights_and_bias(&self, part: &Part, theta: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let k = self.k;
        let split = theta.len() - k;
        let bias = theta[split..].to_vec();
        match part.gram {
            None => (theta[..split].to_vec(), bias),
            Some(_) => {
                let a = ArrayView2::from_shape((part.x.nrows(), k), &theta[..split]).expect("A");
                let mut w = Array2::zeros((k, part.x.ncols()));
                par_gemm(a.t(), part.x.view(), &mut w.view_mut());
                (w.into_raw_vec_and_offset().0, bias)
            }
        }
    }
}

/// The per-sample mean objective of one fit: `(1/S) Σ sᵢ CEᵢ + l2/(2S) ‖W‖²`, `S = Σ sᵢ`.
/// Parameters `θ = [W (k×d, row-major), b (k)]`.
struct Problem<'a> {
    x: ArrayView2<'a, f32>,
    y: &'a [usize],
    sw: &'a [f32],
    k: usize,
    inv_s: f64,
    l2_over_s: f64,
}

/// Rows per parallel chunk of an evaluation.
const CHUNK_ROWS: usize = 256;

impl Problem<'_> {
    /// Objective at `theta`; writes its gradient into `grad`.
    fn eval(&self, theta: &[f32], grad: &mut [f32]) -> f64 {
        let (n, d) = self.x.dim();
        let k = self.k;
        let w = ArrayView2::from_shape((k, d), &theta[..k * d]).expect("theta shape");
        let b = &theta[k * d..];
        let chunks = n.div_ceil(CHUNK_ROWS).max(1);
        let partial: Vec<(f64, Array2<f32>, Vec<f64>)> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let r0 = c * CHUNK_ROWS;
                let r1 = ((c + 1) * CHUNK_ROWS).min(n);
                let xc = self.x.slice(s![r0..r1, ..]);
                let mut z = Array2::<f32>::zeros((r1 - r0, k));
                general_mat_mul(1.0, &xc, &w.t(), 0.0, &mut z);
                let mut gb = vec![0.0f64; k];
                let zs = z.as_slice_mut().expect("contiguous");
                let loss = residuals(zs, b, &self.y[r0..r1], &self.sw[r0..r1], k, &mut gb);
                let mut g = Array2::<f32>::zeros((k, d));
                general_mat_mul(1.0, &z.t(), &xc, 0.0, &mut g);
                (loss, g, gb)
            })
            .collect();
        let mut loss = 0.0;
        let mut gw = ArrayViewMut2::from_shape((k, d), &mut grad[..k * d]).expect("grad shape");
        gw.fill(0.0);
        let mut gb = vec![0.0f64; k];
        for (l, g, b) in &partial {
            loss += l;
            gw += g;
            for (a, v) in gb.iter_mut().zip(b) {
                *a += v;
            }
        }
        let (inv_s, l2s) = (self.inv_s as f32, self.l2_over_s as f32);
        let mut wsq = 0.0f64;
        for (g, wv) in grad[..k * d].iter_mut().zip(&theta[..k * d]) {
            *g = *g * inv_s + l2s * wv;
            wsq += (*wv as f64) * (*wv as f64);
        }
        for (g, v) in grad[k * d..].iter_mut().zip(&gb) {
            *g = (v * self.inv_s) as f32;
        }
        loss * self.inv_s + 0.5 * self.l2_over_s * wsq
    }
}

/// The objective in the Gram form (see [`Trainer`]): `θ = [A (n×k, row-major), b (k)]`,
/// `W = Aᵀ X`, logits `K A + b`, `‖W‖² = ⟨A, K A⟩`. Vectors carry their metric image
/// `[K A, b]`; along a line `K (A + t D) = K A + t K D`, so only accepting a step needs a product.
struct GramLine<'a> {
    kmat: ArrayView2<'a, f32>,
    x: ArrayView2<'a, f32>,
    y: &'a [usize],
    sw: &'a [f32],
    k: usize,
    inv_s: f64,
    l2_over_s: f64,
    /// Current point and `K A`.
    a: Vec<f32>,
    ka: Vec<f32>,
    /// Search direction and its metric image.
    d: Vec<f32>,
    kd: Vec<f32>,
    /// Last trial point, its `K A` and its gradient.
    ta: Vec<f32>,
    tka: Vec<f32>,
    tg: Vec<f32>,
    z: Vec<f32>,
    /// Estimated ratio of the largest weight-gradient component to its Frobenius norm.
    ratio: f32,
}

impl<'a> GramLine<'a> {
    fn new(
        kmat: ArrayView2<'a, f32>,
        x: ArrayView2<'a, f32>,
        y: &'a [usize],
        sw: &'a [f32],
        k: usize,
        s: f64,
        l2: f32,
    ) -> Self {
        let n = kmat.nrows();
        let p = n * k + k;
        GramLine {
            kmat,
            x,
            y,
            sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: l2 as f64 / s,
            a: vec![0.0; p],
            ka: vec![0.0; n * k],
            d: vec![0.0; p],
            kd: vec![0.0; p],
            ta: vec![0.0; p],
            tka: vec![0.0; n * k],
            tg: vec![0.0; p],
            z: vec![0.0; n * k],
            ratio: 1.0 / ((k * x.ncols()) as f32).sqrt(),
        }
    }

    /// `out = K v` for `v` of shape n × k.
    fn kmul(&self, v: &[f32], out: &mut [f32]) {
        let n = self.kmat.nrows();
        let v = ArrayView2::from_shape((n, self.k), v).expect("n × k");
        let mut o = ArrayViewMut2::from_shape((n, self.k), out).expect("n × k");
        par_gemm(self.kmat, v, &mut o);
    }

    /// Objective at `a` (with `ka = K A`); writes the coefficient gradient into `g`.
    #[allow(clippy::too_many_arguments)]
    fn value(
        a: &[f32],
        ka: &[f32],
        g: &mut [f32],
        z: &mut [f32],
        y: &[usize],
        sw: &[f32],
        k: usize,
        inv_s: f64,
        l2_over_s: f64,
    ) -> f64 {
        let nk = ka.len();
        z.copy_from_slice(ka);
        let mut gb = vec![0.0f64; k];
        let loss = residuals(z, &a[nk..], y, sw, k, &mut gb);
        let (inv, l2s) = (inv_s as f32, l2_over_s as f32);
        let mut wsq = 0.0f64;
        for i in 0..nk {
            g[i] = z[i] * inv + l2s * a[i];
            wsq += a[i] as f64 * ka[i] as f64;
        }
        for (gj, v) in g[nk..].iter_mut().zip(&gb) {
            *gj = (v * inv_s) as f32;
        }
        loss * inv_s + 0.5 * l2_over_s * wsq
    }

    fn image(&self, g: &[f32], mg: &mut [f32]) {
        let nk = self.ka.len();
        self.kmul(&g[..nk], &mut mg[..nk]);
        mg[nk..].copy_from_slice(&g[nk..]);
    }
}

impl lbfgs::Objective for GramLine<'_> {
    fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64 {
        let nk = self.ka.len();
        self.a.copy_from_slice(x);
        let mut ka = std::mem::take(&mut self.ka);
        self.kmul(&x[..nk], &mut ka);
        self.ka = ka;
        let f = Self::value(
            &self.a,
            &self.ka,
            g,
            &mut self.z,
            self.y,
            self.sw,
            self.k,
            self.inv_s,
            self.l2_over_s,
        );
        self.image(g, mg);
        f
    }

    fn line(&mut self, d: &[f32], md: &[f32]) {
        self.d.copy_from_slice(d);
        self.kd.copy_from_slice(md);
    }

    fn at(&mut self, step: f64) -> (f64, f64) {
        let t = step as f32;
        let nk = self.ka.len();
        for ((o, a), d) in self.ta.iter_mut().zip(&self.a).zip(&self.d) {
            *o = a + t * d;
        }
        for ((o, a), d) in self.tka.iter_mut().zip(&self.ka).zip(&self.kd[..nk]) {
            *o = a + t * d;
        }
        let f = Self::value(
            &self.ta,
            &self.tka,
            &mut self.tg,
            &mut self.z,
            self.y,
            self.sw,
            self.k,
            self.inv_s,
            self.l2_over_s,
        );
        (f, lbfgs::dot(&self.tg, &self.kd))
    }

    fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]) {
        std::mem::swap(&mut self.a, &mut self.ta);
        std::mem::swap(&mut self.ka, &mut self.tka);
        x.copy_from_slice(&self.a);
        g.copy_from_slice(&self.tg);
        self.image(g, mg);
    }

    fn gradient_max(&mut self, g: &[f32], mg: &[f32], tol: f64) -> f32 {
        let nk = self.ka.len();
        let bias_max = lbfgs::max_abs(&g[nk..]);
        let frob = lbfgs::dot(&g[..nk], &mg[..nk]).max(0.0).sqrt() as f32;
        let estimate = (frob * self.ratio).max(bias_max);
        if estimate as f64 > tol {
            return estimate;
        }
        // Close: compute the weight gradient Gᵀ X exactly.
        let n = self.kmat.nrows();
        let ga = ArrayView2::from_shape((n, self.k), &g[..nk]).expect("n × k");
        let mut gw = Array2::zeros((self.k, self.x.ncols()));
        par_gemm(ga.t(), self.x, &mut gw.view_mut());
        let exact = gw.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if frob > 0.0 {
            let floor = 1.0 / ((self.k * self.x.ncols()) as f32).sqrt();
            self.ratio = (exact / frob).max(floor);
        }
        exact.max(bias_max)
    }
}

/// Limited-memory BFGS with a strong-Wolfe line search (Nocedal & Wright, algorithms 7.4, 3.5,
/// 3.6), over a space with a metric: every vector `v` travels with its image `M v`, and
/// `⟨u, v⟩ = u · M v` (the identity for the primal form).
mod lbfgs {
    use super::SolverStats;
    use std::collections::VecDeque;

    const MEMORY: usize = 10;
    const C1: f64 = 1e-4;
    const C2: f64 = 0.9;
    const MAX_LINE_EVALS: usize = 20;
    /// Relative decrease of the objective below which the run stops (scipy's `factr=1e7`).
    const FTOL: f64 = 1e7 * f64::EPSILON;

    /// A smooth objective, seen along search lines.
    pub(super) trait Objective {
        /// Value at `x`; writes the gradient `g` and its image `mg`.
        fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64;
        /// The next line: from the current point along `d` (image `md`).
        fn line(&mut self, d: &[f32], md: &[f32]);
        /// Value and slope at `current + step · d`.
        fn at(&mut self, step: f64) -> (f64, f64);
        /// Moves to the point last passed to `at`: writes it to `x`, its gradient and image.
        fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]);
        /// The largest absolute component of the gradient, or an estimate above `tol` when it is
        /// certainly above it.
        fn gradient_max(&mut self, g: &[f32], mg: &[f32], tol: f64) -> f32;
    }

    /// A plain function `f(x, grad) -> value` with the identity metric.
    pub(super) struct Closure<F> {
        f: F,
        x: Vec<f32>,
        d: Vec<f32>,
        xt: Vec<f32>,
        gt: Vec<f32>,
    }

    impl<F: FnMut(&[f32], &mut [f32]) -> f64> Closure<F> {
        pub(super) fn new(f: F) -> Self {
            Closure {
                f,
                x: Vec::new(),
                d: Vec::new(),
                xt: Vec::new(),
                gt: Vec::new(),
            }
        }
    }

    impl<F: FnMut(&[f32], &mut [f32]) -> f64> Objective for Closure<F> {
        fn start(&mut self, x: &[f32], g: &mut [f32], mg: &mut [f32]) -> f64 {
            self.x = x.to_vec();
            self.xt = x.to_vec();
            self.gt = vec![0.0; x.len()];
            self.d = vec![0.0; x.len()];
            let f = (self.f)(x, g);
            mg.copy_from_slice(g);
            f
        }

        fn line(&mut self, d: &[f32], _md: &[f32]) {
            self.d.copy_from_slice(d);
        }

        fn at(&mut self, step: f64) -> (f64, f64) {
            let t = step as f32;
            for ((o, x), d) in self.xt.iter_mut().zip(&self.x).zip(&self.d) {
                *o = x + t * d;
            }
            let f = (self.f)(&self.xt, &mut self.gt);
            (f, dot(&self.gt, &self.d))
        }

        fn accept(&mut self, x: &mut [f32], g: &mut [f32], mg: &mut [f32]) {
            std::mem::swap(&mut self.x, &mut self.xt);
            x.copy_from_slice(&self.x);
            g.copy_from_slice(&self.gt);
            mg.copy_from_slice(&self.gt);
        }

        fn gradient_max(&mut self, g: &[f32], _mg: &[f32], _tol: f64) -> f32 {
            max_abs(g)
        }
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f64 {
        // Four partial sums: vectorises, and is more accurate than one running sum.
        let mut acc = [0.0f64; 4];
        let (ca, ra) = a.split_at(a.len() / 4 * 4);
        let (cb, rb) = b.split_at(ca.len());
        for (x, y) in ca.chunks_exact(4).zip(cb.chunks_exact(4)) {
            for i in 0..4 {
                acc[i] += x[i] as f64 * y[i] as f64;
            }
        }
        let tail: f64 = ra.iter().zip(rb).map(|(x, y)| *x as f64 * *y as f64).sum();
        acc.iter().sum::<f64>() + tail
    }

    pub(super) fn max_abs(v: &[f32]) -> f32 {
        v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    fn axpy(y: &mut [f32], a: f64, x: &[f32]) {
        let a = a as f32;
        for (yv, xv) in y.iter_mut().zip(x) {
            *yv += a * xv;
        }
    }

    /// One stored correction pair: `s`, `M s`, `y`, `M y`, `1 / ⟨s, y⟩`.
    struct Pair {
        s: Vec<f32>,
        ms: Vec<f32>,
        y: Vec<f32>,
        my: Vec<f32>,
        rho: f64,
    }

    /// Minimises `obj` from `x` (updated in place).
    pub(super) fn minimize<O: Objective>(
        obj: &mut O,
        x: &mut [f32],
        max_iter: usize,
        gtol: f64,
    ) -> SolverStats {
        let p = x.len();
        let (mut g, mut mg) = (vec![0.0f32; p], vec![0.0f32; p]);
        let (mut g_new, mut mg_new) = (vec![0.0f32; p], vec![0.0f32; p]);
        let mut fx = obj.start(x, &mut g, &mut mg);
        let mut evals = 1;
        let mut hist: VecDeque<Pair> = VecDeque::with_capacity(MEMORY);
        let (mut d, mut md) = (vec![0.0f32; p], vec![0.0f32; p]);
        let mut alpha = [0.0f64; MEMORY];
        let mut iterations = 0;
        let mut grad_max = obj.gradient_max(&g, &mg, gtol);
        let mut converged = grad_max as f64 <= gtol;
        while !converged && iterations < max_iter {
            // Two-loop recursion: d = −H g.
            d.copy_from_slice(&g);
            md.copy_from_slice(&mg);
            for (i, pair) in hist.iter().enumerate().rev() {
                let a = pair.rho * dot(&pair.s, &md);
                alpha[i] = a;
                axpy(&mut d, -a, &pair.y);
                axpy(&mut md, -a, &pair.my);
            }
            if let Some(last) = hist.back() {
                let gamma = (dot(&last.s, &last.my) / dot(&last.y, &last.my)) as f32;
                d.iter_mut().for_each(|v| *v *= gamma);
                md.iter_mut().for_each(|v| *v *= gamma);
            }
            for (i, pair) in hist.iter().enumerate() {
                let beta = pair.rho * dot(&pair.y, &md);
                axpy(&mut d, alpha[i] - beta, &pair.s);
                axpy(&mut md, alpha[i] - beta, &pair.ms);
            }
            d.iter_mut().for_each(|v| *v = -*v);
            md.iter_mut().for_each(|v| *v = -*v);
            let mut dg = dot(&d, &mg);
            if dg.is_nan() || dg >= 0.0 {
                // Not a descent direction (rounding): restart from steepest descent.
                hist.clear();
                for i in 0..p {
                    d[i] = -g[i];
                    md[i] = -mg[i];
                }
                dg = dot(&d, &mg);
            }
            let step0 = if hist.is_empty() {
                (1.0 / dot(&d, &md).sqrt()).min(1.0)
            } else {
                1.0
            };
            obj.line(&d, &md);
            let Some((step, f_new)) = line_search(obj, fx, dg, step0, &mut evals) else {
                if hist.is_empty() {
                    break;
                }
                hist.clear();
                continue;
            };
            iterations += 1;
            obj.accept(x, &mut g_new, &mut mg_new);
            let mut pair = match hist.len() {
                MEMORY => hist.pop_front().expect("full"),
                _ => Pair {
                    s: vec![0.0; p],
                    ms: vec![0.0; p],
                    y: vec![0.0; p],
                    my: vec![0.0; p],
                    rho: 0.0,
                },
            };
            let t = step as f32;
            for i in 0..p {
                pair.s[i] = t * d[i];
                pair.ms[i] = t * md[i];
                pair.y[i] = g_new[i] - g[i];
                pair.my[i] = mg_new[i] - mg[i];
            }
            let sy = dot(&pair.s, &pair.my);
            if sy > 1e-10 * dot(&pair.y, &pair.my) {
                pair.rho = 1.0 / sy;
                hist.push_back(pair);
            }
            std::mem::swap(&mut g, &mut g_new);
            std::mem::swap(&mut mg, &mut mg_new);
            let f_old = fx;
            fx = f_new;
            grad_max = obj.gradient_max(&g, &mg, gtol);
            if grad_max as f64 <= gtol || (f_old - fx) <= FTOL * f_old.abs().max(fx.abs()).max(1.0)
            {
                converged = true;
            }
        }
        SolverStats {
            iterations,
            evaluations: evals,
            objective: fx,
            grad_max,
            converged,
        }
    }

    /// Minimiser of the cubic through two points with slopes, or `None` when it is not defined.
    fn cubic_min(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> Option<f64> {
        let d1 = da + db - 3.0 * (fa - fb) / (a - b);
        let disc = d1 * d1 - da * db;
        if disc.is_nan() || disc < 0.0 {
            return None;
        }
        let d2 = (b - a).signum() * disc.sqrt();
        let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
        t.is_finite().then_some(t)
    }

    /// Strong-Wolfe line search along the objective's current line. Returns the step and the
    /// objective there, with that point the last one evaluated, or `None` when no step decreased
    /// the objective.
    fn line_search<O: Objective>(
        obj: &mut O,
        f0: f64,
        dphi0: f64,
        step0: f64,
        evals: &mut usize,
    ) -> Option<(f64, f64)> {
        let armijo = |a: f64, fa: f64| fa <= f0 + C1 * a * dphi0;
        let curvature = |da: f64| da.abs() <= -C2 * dphi0;
        let mut phi = |a: f64| {
            *evals += 1;
            obj.at(a)
        };
        let (mut a_prev, mut f_prev, mut d_prev) = (0.0, f0, dphi0);
        let mut a = step0;
        let mut used = 0;
        let (mut lo, mut hi);
        loop {
            let (fa, da) = phi(a);
            used += 1;
            if !fa.is_finite() {
                // Overflow: shrink towards the last good point.
                hi = (a, f64::INFINITY, f64::INFINITY);
                lo = (a_prev, f_prev, d_prev);
                break;
            }
            if !armijo(a, fa) || (used > 1 && fa >= f_prev) {
                lo = (a_prev, f_prev, d_prev);
                hi = (a, fa, da);
                break;
            }
            if curvature(da) {
                return Some((a, fa));
            }
            if da >= 0.0 {
                lo = (a, fa, da);
                hi = (a_prev, f_prev, d_prev);
                break;
            }
            if used >= MAX_LINE_EVALS {
                return Some((a, fa));
            }
            a_prev = a;
            f_prev = fa;
            d_prev = da;
            a *= 4.0;
        }
        // Zoom: lo satisfies Armijo and has the lowest value seen; the minimiser lies between.
        while used < MAX_LINE_EVALS {
            let (a_lo, a_hi) = (lo.0, hi.0);
            let width = (a_hi - a_lo).abs();
            if width <= 1e-12 * a_lo.abs().max(a_hi.abs()) {
                break;
            }
            let (left, right) = (a_lo.min(a_hi), a_lo.max(a_hi));
            let mut aj = if hi.1.is_finite() {
                cubic_min(lo.0, lo.1, lo.2, hi.0, hi.1, hi.2)
            } else {
                None
            }
            .unwrap_or(0.5 * (a_lo + a_hi));
            if !(aj > left + 0.1 * width && aj < right - 0.1 * width) {
                aj = 0.5 * (a_lo + a_hi);
            }
            let (fj, dj) = phi(aj);
            used += 1;
            if !fj.is_finite() || !armijo(aj, fj) || fj >= lo.1 {
                hi = (aj, fj, dj);
            } else {
                if curvature(dj) {
                    return Some((aj, fj));
                }
                if dj * (hi.0 - lo.0) >= 0.0 {
                    hi = lo;
                }
                lo = (aj, fj, dj);
            }
        }
        // Out of evaluations: take the best Armijo point found, if it moved at all.
        if lo.0 > 0.0 && lo.1 < f0 {
            let (fl, _) = phi(lo.0);
            return Some((lo.0, fl));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn random_problem(
        n: usize,
        d: usize,
        k: usize,
        seed: u64,
    ) -> (Array2<f32>, Vec<usize>, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, d), |_| rng.gen_range(-1.0f32..1.0));
        let y: Vec<usize> = (0..n).map(|i| i % k).collect();
        (x, y, rng)
    }

    /// The analytic gradient agrees with finite differences of the objective.
    #[test]
    fn gradient_matches_finite_differences() {
        let (n, d, k) = (30, 5, 3);
        let (x, y, mut rng) = random_problem(n, d, k, 1);
        let (sw, s) = sample_weights(&y, k, ClassWeight::Balanced);
        let problem = Problem {
            x: x.view(),
            y: &y,
            sw: &sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: 0.7 / s,
        };
        let theta: Vec<f32> = (0..k * (d + 1))
            .map(|_| rng.gen_range(-0.5f32..0.5))
            .collect();
        let mut g = vec![0.0; theta.len()];
        problem.eval(&theta, &mut g);
        let mut scratch = vec![0.0; theta.len()];
        for j in 0..theta.len() {
            let h = 1e-2f32;
            let mut tp = theta.clone();
            tp[j] += h;
            let mut tm = theta.clone();
            tm[j] -= h;
            let fd = (problem.eval(&tp, &mut scratch) - problem.eval(&tm, &mut scratch))
                / (2.0 * h as f64);
            assert!(
                (fd - g[j] as f64).abs() < 1e-3,
                "component {j}: analytic {} vs numeric {fd}",
                g[j]
            );
        }
    }

    /// The Gram form computes the same objective and weight gradient as the primal form at
    /// `W = Aᵀ X`.
    #[test]
    fn gram_form_matches_primal_form() {
        let (n, d, k) = (12, 20, 3);
        let (x, y, mut rng) = random_problem(n, d, k, 2);
        let (sw, s) = sample_weights(&y, k, ClassWeight::None);
        let mut kmat = Array2::zeros((n, n));
        par_gemm(x.view(), x.t(), &mut kmat.view_mut());
        let theta: Vec<f32> = (0..n * k + k)
            .map(|_| rng.gen_range(-0.1f32..0.1))
            .collect();
        let a = ArrayView2::from_shape((n, k), &theta[..n * k]).unwrap();
        let w = a.t().dot(&x);
        let mut primal_theta = w.iter().copied().collect::<Vec<_>>();
        primal_theta.extend_from_slice(&theta[n * k..]);
        let problem = Problem {
            x: x.view(),
            y: &y,
            sw: &sw,
            k,
            inv_s: 1.0 / s,
            l2_over_s: 0.3 / s,
        };
        let mut gp = vec![0.0; primal_theta.len()];
        let fp = problem.eval(&primal_theta, &mut gp);

        let mut line = GramLine::new(kmat.view(), x.view(), &y, &sw, k, s, 0.3);
        let (mut g, mut mg) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
        let fg = lbfgs::Objective::start(&mut line, &theta, &mut g, &mut mg);
        assert!((fp - fg).abs() < 1e-5, "{fp} vs {fg}");
        let ga = ArrayView2::from_shape((n, k), &g[..n * k]).unwrap();
        let gw = ga.t().dot(&x);
        for (u, v) in gw.iter().zip(&gp[..k * d]) {
            assert!((u - v).abs() < 1e-5, "{u} vs {v}");
        }
        for (u, v) in g[n * k..].iter().zip(&gp[k * d..]) {
            assert!((u - v).abs() < 1e-6, "{u} vs {v}");
        }
        // The exact gradient check agrees with the primal one.
        let gmax = lbfgs::Objective::gradient_max(&mut line, &g, &mg, f64::INFINITY);
        let exact = lbfgs::max_abs(&gp);
        assert!(gmax <= exact * 1.0001 + 1e-7, "{gmax} vs {exact}");
        let gmax = lbfgs::Objective::gradient_max(&mut line, &g, &mg, 0.0);
        assert!(gmax.max(0.0) > 0.0);
        let forced = {
            let mut l = GramLine::new(kmat.view(), x.view(), &y, &sw, k, s, 0.3);
            l.ratio = 1.0;
            lbfgs::Objective::gradient_max(&mut l, &g, &mg, 1e9)
        };
        assert!((forced - exact).abs() < 1e-5, "{forced} vs {exact}");
    }

    /// Fitting in the Gram form (n < 2d) and the primal form (n ≥ 2d) gives the same head.
    #[test]
    fn gram_and_primal_fits_agree() {
        let (n, d, k) = (40, 25, 3);
        let (mut x, y, _) = random_problem(n, d, k, 3);
        for (i, mut row) in x.rows_mut().into_iter().enumerate() {
            row[y[i]] += 1.0;
        }
        let params = SoftmaxParams::new()
            .l2(2.0)
            .tol(1e-7)
            .max_iter(2000)
            .check()
            .unwrap();
        let (mean, scale) = standardisation(x.view());
        let xs = standardise(x.view(), &mean, &scale);
        let all: Vec<usize> = (0..n).collect();
        let mut primal = Trainer::new(&xs, &y, k, &params);
        primal.gram = None;
        let gram = Trainer::new(&xs, &y, k, &params);
        assert!(gram.gram.is_some());
        let fit = |t: &Trainer| {
            let part = t.part(&all, &[]);
            let mut theta = vec![0.0; t.param_len(n)];
            let stats = t.solve(&part, 2.0, &mut theta);
            assert!(stats.converged, "{stats:?}");
            t.weights_and_bias(&part, &theta)
        };
        let (wp, bp) = fit(&primal);
        let (wg, bg) = fit(&gram);
        for (u, v) in wp.iter().chain(&bp).zip(wg.iter().chain(&bg)) {
            assert!((u - v).abs() < 1e-3, "{u} vs {v}");
        }
    }

    /// L-BFGS finds the minimum of a badly scaled quadratic.
    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let scales: Vec<f32> = (0..50).map(|i| 1.0 + i as f32 * 2.0).collect();
        let mut x = vec![1.0f32; 50];
        let mut obj = lbfgs::Closure::new(|x: &[f32], g: &mut [f32]| {
            let mut f = 0.0;
            for i in 0..x.len() {
                let c = x[i] - 0.5;
                g[i] = scales[i] * c;
                f += 0.5 * (scales[i] * c * c) as f64;
            }
            f
        });
        let stats = lbfgs::minimize(&mut obj, &mut x, 500, 1e-5);
        assert!(stats.converged, "{stats:?}");
        assert!(x.iter().all(|v| (v - 0.5).abs() < 1e-4), "{x:?}");
    }
}

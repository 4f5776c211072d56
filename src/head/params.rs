//! The head's hyperparameters ([`SoftmaxParams`], checked into [`SoftmaxValidParams`]), its
//! defaults, and what can go wrong ([`HeadError`]).
use linfa::ParamGuard;
use serde::{Deserialize, Serialize};

/// Default grid of L2 strengths (`l2`, i.e. `1 / C` in scikit-learn's terms), strong to weak:
/// `C` from 0.01 to 100 around scikit-learn's default `C = 1`.
pub const DEFAULT_L2_GRID: [f32; 5] = [100.0, 10.0, 1.0, 0.1, 0.01];

/// Default gradient tolerance: ten times tighter than scikit-learn's `tol=1e-4` (same meaning), as
/// weakly regularised fits otherwise stop early enough to change which strength wins.
pub const DEFAULT_TOL: f32 = 1e-5;

/// Weights tried for the parts of a fused model's features (see
/// [`SoftmaxParams::part_dims`]): every part at 1, then each part in turn at 2 and at 4 (the others
/// at 1). A part's weight multiplies its standardised features, so it is that part's share of the
/// L2 penalty that changes: weight 2 is a penalty 4× weaker on that part.
pub const PART_WEIGHT_FACTORS: [f32; 2] = [2.0, 4.0];

/// How the head scales features before the linear map (the scaling is stored in the head, so
/// prediction applies it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaling {
    /// Each feature centred and divided by its own standard deviation (z-scores).
    #[default]
    Feature,
    /// Each feature centred; each part (the whole vector for one model, each backbone's block for
    /// a fused model) divided by one scale, the root mean square of its features' standard
    /// deviations: the geometry of the backbone's features is kept, and weak, noisy features are
    /// not blown up to the size of strong ones.
    Part,
}

impl Scaling {
    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scaling::Feature => "feature",
            Scaling::Part => "part",
        }
    }
}

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
    /// No feature scaling to try.
    #[error("no feature scaling to try: give at least one")]
    NoScaling,
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
    /// Fixed part weights that do not match the parts, one each.
    #[error("{weights} part weights given for {parts} parts")]
    PartWeights {
        /// Weights given.
        weights: usize,
        /// Parts of the model.
        parts: usize,
    },
    /// A fused model's part dimensions do not add up to the features' dimension.
    #[error("the parts' dimensions {dims:?} add up to {sum}, but the features have {dim}")]
    PartDims {
        /// The parts' dimensions.
        dims: Vec<usize>,
        /// Their sum.
        sum: usize,
        /// The features' dimension.
        dim: usize,
    },
    /// An error reported by linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

impl HeadError {
    /// A one-line suggestion for the user, when one is known.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            HeadError::ClassTooSmall { .. } => Some("add images to that class, or use fewer --folds"),
            HeadError::NonFinite { .. } => {
                Some("the feature cache may be damaged: re-run `qcyn extract` (damaged entries are recomputed)")
            }
            HeadError::DimensionMismatch { .. } => Some("use the model the head was trained with"),
            _ => None,
        }
    }
}

/// Hyperparameters of the softmax head, checked (see [`SoftmaxParams`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftmaxValidParams {
    pub(super) l2_grid: Vec<f32>,
    pub(super) folds: usize,
    pub(super) class_weight: ClassWeight,
    pub(super) seed: u64,
    pub(super) max_iter: usize,
    pub(super) tol: f32,
    pub(super) n_classes: Option<usize>,
    /// Dimensions of a fused model's parts, in order (empty: one block, no part weights).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) part_dims: Vec<usize>,
    /// Scalings tried by the cross-validation (the first when there is none).
    #[serde(default = "default_scalings")]
    pub(super) scalings: Vec<Scaling>,
    /// A fused model's part weights, fixed (none: chosen by the cross-validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) part_weights: Option<Vec<f32>>,
}

fn default_scalings() -> Vec<Scaling> {
    vec![Scaling::Feature, Scaling::Part]
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
    /// Scalings tried by the cross-validation.
    pub fn scalings(&self) -> &[Scaling] {
        &self.scalings
    }
    /// Dimensions of a fused model's parts (empty for one model).
    pub fn part_dims_of(&self) -> &[usize] {
        &self.part_dims
    }
    /// The same hyperparameters for a fused model's features with parts of `dims` (their sum is
    /// checked against the features when fitting).
    pub fn with_part_dims(&self, dims: Vec<usize>) -> SoftmaxValidParams {
        SoftmaxValidParams {
            part_dims: dims,
            ..self.clone()
        }
    }
    /// The same hyperparameters with one L2 strength (no cross-validation) and `classes` classes,
    /// whether or not each occurs in the rows it is fitted on: the folds of
    /// [`crate::estimate`]. A strength that is not finite and positive is refused.
    pub fn with_fixed_l2(&self, l2: f32, classes: usize) -> Option<SoftmaxValidParams> {
        (l2.is_finite() && l2 > 0.0).then(|| SoftmaxValidParams {
            l2_grid: vec![l2],
            n_classes: Some(classes),
            ..self.clone()
        })
    }
    /// The same hyperparameters with the scaling and part weights an earlier fit chose (see
    /// [`super::CvReport`]), fixed: what [`crate::estimate`]'s folds refit with.
    pub fn with_choice(&self, scaling: Scaling, part_weights: &[f32]) -> SoftmaxValidParams {
        SoftmaxValidParams {
            scalings: vec![scaling],
            part_weights: (!part_weights.is_empty()).then(|| part_weights.to_vec()),
            ..self.clone()
        }
    }
    /// The same hyperparameters with another class weighting (still valid: weighting is not
    /// checked).
    pub fn with_class_weight(&self, class_weight: ClassWeight) -> SoftmaxValidParams {
        SoftmaxValidParams {
            class_weight,
            ..self.clone()
        }
    }
}

/// Hyperparameters of the softmax head (unchecked builder; a [`linfa::ParamGuard`]).
///
/// Defaults: grid [`DEFAULT_L2_GRID`], 5 folds, no class weights, seed 0, at most 300 L-BFGS
/// iterations per fit, gradient tolerance [`DEFAULT_TOL`], both [`Scaling`]s tried.
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
            part_dims: Vec::new(),
            scalings: default_scalings(),
            part_weights: None,
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
    /// The dimensions of a fused model's parts, in feature order: the part weights
    /// ([`PART_WEIGHT_FACTORS`]) are then chosen by the same cross-validation as the L2 strength.
    pub fn part_dims(mut self, dims: Vec<usize>) -> Self {
        self.0.part_dims = dims;
        self
    }
    /// The feature scalings to choose from by the same cross-validation as the L2 strength (one:
    /// that one; without cross-validation the first is used).
    pub fn scalings(mut self, scalings: Vec<Scaling>) -> Self {
        self.0.scalings = scalings;
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
        if p.scalings.is_empty() {
            return Err(HeadError::NoScaling);
        }
        Ok(p)
    }

    fn check(self) -> Result<SoftmaxValidParams, HeadError> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// Checks training rows before any fitting: as many labels as rows, at least one row and one
/// column, finite values, labels below `classes`. Returns the count of each class.
pub(super) fn check_rows(
    x: ndarray::ArrayView2<f32>,
    y: &[usize],
    classes: usize,
) -> Result<Vec<usize>, HeadError> {
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
    let mut counts = vec![0usize; classes];
    for (row, &label) in y.iter().enumerate() {
        if label >= classes {
            return Err(HeadError::LabelOutOfRange {
                row,
                label,
                classes,
            });
        }
        counts[label] += 1;
    }
    Ok(counts)
}

//! Nearest class centroid, by cosine similarity: every feature vector is scaled to unit length,
//! each class is the mean of its unit vectors (scaled to unit length again), and an image goes to
//! the class whose centroid is most similar. No hyperparameters, nothing to cross-validate; class
//! sizes play no part (so class weights do not apply).
use ndarray::{Array2, ArrayView2, Axis};

use super::params::HeadError;

/// Rows scaled to unit length (a zero row stays zero).
pub fn unit_rows(x: ArrayView2<f32>) -> Array2<f32> {
    let mut u = x.to_owned();
    for mut row in u.rows_mut() {
        let norm = row
            .iter()
            .map(|v| (*v as f64) * (*v as f64))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            row.mapv_inplace(|v| (v as f64 / norm) as f32);
        }
    }
    u
}

/// Checks features and labels as every head does: same length, something to fit, finite values,
/// labels below `classes`. Returns the count of each class.
pub(super) fn check_training(
    x: ArrayView2<f32>,
    y: &[usize],
    classes: usize,
) -> Result<Vec<usize>, HeadError> {
    let counts = super::params::check_rows(x, y, classes)?;
    if let Some(class) = counts.iter().position(|&c| c == 0) {
        return Err(HeadError::ClassTooSmall {
            class,
            count: 0,
            needed: 1,
            why: String::new(),
        });
    }
    Ok(counts)
}

/// A fitted nearest-centroid head.
#[derive(Debug, Clone, PartialEq)]
pub struct CentroidHead {
    /// One unit-length centroid per class, `classes × dim`.
    pub centroids: Array2<f32>,
}

impl CentroidHead {
    /// Fits on features `x` (one row per sample) with labels `y` in `0..classes`; every class
    /// needs a sample.
    pub fn fit(x: ArrayView2<f32>, y: &[usize], classes: usize) -> Result<Self, HeadError> {
        check_training(x, y, classes)?;
        let u = unit_rows(x);
        let mut centroids = Array2::<f32>::zeros((classes, x.ncols()));
        for (row, &c) in u.rows().into_iter().zip(y) {
            let mut target = centroids.row_mut(c);
            target += &row;
        }
        Ok(CentroidHead {
            centroids: unit_rows(centroids.view()),
        })
    }

    /// Cosine similarity of every row of `x` to every centroid (`rows × classes`).
    pub fn similarities(&self, x: ArrayView2<f32>) -> Result<Array2<f32>, HeadError> {
        if x.ncols() != self.centroids.ncols() {
            return Err(HeadError::DimensionMismatch {
                expected: self.centroids.ncols(),
                found: x.ncols(),
            });
        }
        Ok(unit_rows(x).dot(&self.centroids.t()))
    }

    /// The class of each row: the most similar centroid (the lower index on a tie).
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<Vec<usize>, HeadError> {
        let s = self.similarities(x)?;
        Ok(s.axis_iter(Axis(0))
            .map(|r| {
                let mut best = 0;
                for (j, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = j;
                    }
                }
                best
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nearest_centroid_is_by_angle_not_length() {
        // Class 0 points along x, class 1 along y; lengths differ wildly.
        let x = array![[1.0f32, 0.1], [100.0, -5.0], [0.0, 2.0], [0.2, 30.0]];
        let head = CentroidHead::fit(x.view(), &[0, 0, 1, 1], 2).unwrap();
        for row in head.centroids.rows() {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
        }
        // A long vector at 40° is closer in angle to x; a short one at 60° to y.
        let q = array![[500.0f32, 419.5], [0.01, 0.0173], [0.0, 0.0]];
        assert_eq!(head.predict(q.view()).unwrap(), [0, 1, 0]);
        // The centroid of class 0 is the mean of the *unit* vectors: (1, 0.1)/|…| and (1, −0.05)/|…|.
        let a = [1.0f32 / 1.01f32.sqrt(), 0.1 / 1.01f32.sqrt()];
        let b = [100.0f32 / 10025f32.sqrt(), -5.0 / 10025f32.sqrt()];
        let m = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
        let n = (m[0] * m[0] + m[1] * m[1]).sqrt();
        assert!((head.centroids[[0, 1]] - m[1] / n).abs() < 1e-6);
    }

    #[test]
    fn a_class_without_samples_and_bad_shapes_are_errors() {
        let x = array![[1.0f32, 0.0], [0.0, 1.0]];
        assert!(matches!(
            CentroidHead::fit(x.view(), &[0, 0], 2),
            Err(HeadError::ClassTooSmall { class: 1, .. })
        ));
        let head = CentroidHead::fit(x.view(), &[0, 1], 2).unwrap();
        assert!(matches!(
            head.predict(array![[1.0f32, 2.0, 3.0]].view()),
            Err(HeadError::DimensionMismatch { .. })
        ));
    }
}

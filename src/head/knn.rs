//! k-nearest neighbours, by cosine similarity on unit-length features.
//!
//! Each of the `k` most similar training vectors votes for its class (ties in similarity go to the
//! earlier training row); with [`ClassWeight::Balanced`] a vote of class `c` weighs
//! `n / (classes · count_c)`, so a large class does not win by numbers alone. The class with the
//! most votes wins; a tie goes to the class whose voters are more similar in sum, then to the lower
//! index. `k` is chosen on the training data only, by leave-one-out accuracy over
//! [`DEFAULT_K_GRID`] (values above `n − 1` are dropped); ties go to the smaller `k`.
use ndarray::{Array2, ArrayView2};

use super::centroid::{check_training, unit_rows};
use super::params::{ClassWeight, HeadError};

/// The `k` values tried by leave-one-out.
pub const DEFAULT_K_GRID: [usize; 6] = [1, 3, 5, 7, 9, 15];

/// A fitted k-nearest-neighbours head.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnHead {
    /// Unit-length training vectors, one row per sample.
    pub train: Array2<f32>,
    /// Their labels.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Weight of one vote of each class.
    pub vote_weight: Vec<f64>,
    /// The chosen `k`.
    pub k: usize,
    /// Leave-one-out accuracy of every `k` tried, as `(k, accuracy)`.
    pub loo: Vec<(usize, f64)>,
}

impl KnnHead {
    /// Fits on features `x` with labels `y` in `0..classes` and chooses `k` from `grid` by
    /// leave-one-out on them (with one sample per class and nothing to leave out, `k` = 1).
    pub fn fit(
        x: ArrayView2<f32>,
        y: &[usize],
        classes: usize,
        class_weight: ClassWeight,
        grid: &[usize],
    ) -> Result<Self, HeadError> {
        let counts = check_training(x, y, classes)?;
        let n = y.len();
        let vote_weight: Vec<f64> = match class_weight {
            ClassWeight::None => vec![1.0; classes],
            ClassWeight::Balanced => counts
                .iter()
                .map(|&c| n as f64 / (classes * c) as f64)
                .collect(),
        };
        let train = unit_rows(x);
        let mut head = KnnHead {
            train,
            labels: y.to_vec(),
            classes,
            vote_weight,
            k: 1,
            loo: Vec::new(),
        };
        let mut ks: Vec<usize> = grid.iter().copied().filter(|&k| k >= 1 && k < n).collect();
        ks.sort_unstable();
        ks.dedup();
        if ks.is_empty() {
            return Ok(head);
        }
        let kmax = *ks.last().expect("not empty");
        let sims = head.train.dot(&head.train.t());
        let mut correct = vec![0usize; ks.len()];
        for (i, &label) in y.iter().enumerate() {
            let order = nearest(sims.row(i).iter().copied(), Some(i), kmax);
            for (j, &k) in ks.iter().enumerate() {
                if head.vote(&order[..k]) == label {
                    correct[j] += 1;
                }
            }
        }
        head.loo = ks
            .iter()
            .zip(&correct)
            .map(|(&k, &c)| (k, c as f64 / n as f64))
            .collect();
        let mut best = 0;
        for (j, &(_, acc)) in head.loo.iter().enumerate() {
            if acc > head.loo[best].1 {
                best = j;
            }
        }
        head.k = head.loo[best].0;
        Ok(head)
    }

    /// The winning class among neighbours given as `(similarity, training row)`.
    fn vote(&self, neighbours: &[(f32, usize)]) -> usize {
        let mut votes = vec![0.0f64; self.classes];
        let mut sims = vec![0.0f64; self.classes];
        for &(s, i) in neighbours {
            let c = self.labels[i];
            votes[c] += self.vote_weight[c];
            sims[c] += s as f64;
        }
        let mut best = 0;
        for c in 1..self.classes {
            if votes[c] > votes[best] || (votes[c] == votes[best] && sims[c] > sims[best]) {
                best = c;
            }
        }
        best
    }

    /// The class of each row of `x`.
    pub fn predict(&self, x: ArrayView2<f32>) -> Result<Vec<usize>, HeadError> {
        if x.ncols() != self.train.ncols() {
            return Err(HeadError::DimensionMismatch {
                expected: self.train.ncols(),
                found: x.ncols(),
            });
        }
        let sims = unit_rows(x).dot(&self.train.t());
        Ok(sims
            .rows()
            .into_iter()
            .map(|r| self.vote(&nearest(r.iter().copied(), None, self.k)))
            .collect())
    }
}

/// The `k` most similar rows as `(similarity, row)`, most similar first (ties: lower row), leaving
/// out `skip`.
fn nearest(sims: impl Iterator<Item = f32>, skip: Option<usize>, k: usize) -> Vec<(f32, usize)> {
    let mut all: Vec<(f32, usize)> = sims
        .enumerate()
        .filter(|&(i, _)| Some(i) != skip)
        .map(|(i, s)| (s, i))
        .collect();
    let by = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < all.len() {
        all.select_nth_unstable_by(k, by);
        all.truncate(k);
    }
    all.sort_by(by);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Two clusters by angle: class 0 near the x axis, class 1 near the y axis, lengths varied.
    fn clusters() -> (Array2<f32>, Vec<usize>) {
        let x = array![
            [1.0f32, 0.05],
            [3.0, 0.3],
            [10.0, -0.5],
            [0.5, 0.01],
            [0.1, 1.0],
            [-0.2, 4.0],
            [0.3, 9.0],
        ];
        (x, vec![0, 0, 0, 0, 1, 1, 1])
    }

    #[test]
    fn knn_votes_by_cosine_and_chooses_k_by_leave_one_out() {
        let (x, y) = clusters();
        let head = KnnHead::fit(x.view(), &y, 2, ClassWeight::None, &DEFAULT_K_GRID).unwrap();
        // n = 7: k ∈ {1, 3, 5} are tried; 1 and 3 classify every left-out point right; k = 5
        // misclassifies each class-1 point (4 class-0 votes vs 2). Ties go to the smaller k.
        assert_eq!(head.loo.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(head.loo[0].1, 1.0);
        assert_eq!(head.loo[2].1, 4.0 / 7.0);
        assert_eq!(head.k, 1);
        let q = array![[100.0f32, 1.0], [0.0, 0.001], [1.0, 1.2]];
        assert_eq!(head.predict(q.view()).unwrap(), [0, 1, 1]);
    }

    #[test]
    fn balanced_votes_counter_a_large_class() {
        // Six of class 0 along x, two of class 1 near the diagonal.
        let x = array![
            [1.0f32, 0.05],
            [3.0, 0.3],
            [10.0, -0.5],
            [0.5, 0.01],
            [1.0, 0.0],
            [2.0, 0.1],
            [0.6, 1.0],
            [0.5, 1.0],
        ];
        let y = [0, 0, 0, 0, 0, 0, 1, 1];
        // On the diagonal, the 5 nearest are both class-1 points (cosine ≈ 0.97, 0.95) and three
        // of class 0 (≈ 0.7): 3 votes to 2 for class 0 …
        let q = array![[1.0f32, 1.0]];
        let plain = KnnHead::fit(x.view(), &y, 2, ClassWeight::None, &[5]).unwrap();
        assert_eq!(plain.k, 5);
        assert_eq!(plain.predict(q.view()).unwrap(), [0]);
        // … but balanced, a class-0 vote weighs 8/(2·6) = ⅔ and a class-1 vote 8/(2·2) = 2:
        // 2 against 4.
        let balanced = KnnHead::fit(x.view(), &y, 2, ClassWeight::Balanced, &[5]).unwrap();
        assert!((balanced.vote_weight[0] - 2.0 / 3.0).abs() < 1e-12);
        assert!((balanced.vote_weight[1] - 2.0).abs() < 1e-12);
        assert_eq!(balanced.predict(q.view()).unwrap(), [1]);
    }

    #[test]
    fn one_sample_per_class_gives_k_1() {
        let x = array![[1.0f32, 0.0], [0.0, 1.0]];
        let head = KnnHead::fit(x.view(), &[0, 1], 2, ClassWeight::None, &DEFAULT_K_GRID).unwrap();
        assert_eq!(head.k, 1);
        assert_eq!(head.loo, [(1, 0.0)]);
        assert!(matches!(
            KnnHead::fit(x.view(), &[0, 0], 2, ClassWeight::None, &[1]),
            Err(HeadError::ClassTooSmall { class: 1, .. })
        ));
    }
}

//! What accuracy to expect on photos never seen, when the held-out part is too few distinct photos
//! to say.
//!
//! A grouped split keeps every near-duplicate group on one side, so copies of one photo (the
//! tutorial's augmented copies, bursts, re-saves) never score each other. On a folder made of a
//! few photos and many copies of each, that leaves only a photo or two per class held out: one
//! split then says 1.000 or 0.5 by chance. [`grouped_cv`] instead holds out every photo once:
//! grouped, stratified k-fold cross-validation over every usable image (training and validation
//! parts together), the head refitted on the other folds at the L2 strength the fit chose, each
//! near-duplicate group in one fold. Its pooled out-of-fold accuracy is what `fit` reports when
//! the held-out part has fewer than [`MIN_HELD_OUT_PHOTOS`] distinct photos.
//!
//! A class whose images are all one group cannot be held out without leaving it untrained: it is
//! trained on in every fold, and named in [`Estimate::not_scored`].
use std::collections::HashMap;

use ndarray::{Array2, ArrayView2, Axis};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::head::SoftmaxValidParams;
use crate::metrics::Report;

/// Below this many distinct photos (near-duplicate groups) in the held-out part, `fit` reports
/// [`grouped_cv`]'s accuracy rather than the held-out part's: with fewer, one photo more or less
/// right moves the figure by more than 3 points, and a split against another by far more.
pub const MIN_HELD_OUT_PHOTOS: usize = 30;

/// Folds asked for; fewer when a class has fewer distinct photos.
pub const DEFAULT_FOLDS: usize = 5;

/// The grouped cross-validated estimate (`fit --json`'s `estimate`).
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Always `"grouped_cv"`.
    pub method: String,
    /// Why the held-out part alone was not enough.
    pub reason: String,
    /// Folds used.
    pub folds: usize,
    /// Images scored out of fold.
    pub images: usize,
    /// Distinct photos (near-duplicate groups) scored out of fold.
    pub photos: usize,
    /// Out-of-fold accuracy over distinct photos: each photo (near-duplicate group) is one vote,
    /// the mean of its copies' out-of-fold probabilities, as an unseen photo would be one image.
    pub accuracy: f64,
    /// 95% interval of the accuracy (Wilson) over the distinct photos.
    pub accuracy_ci95: [f64; 2],
    /// Out-of-fold macro-F1 over distinct photos.
    pub macro_f1: f64,
    /// Out-of-fold accuracy over every image, each copy counted on its own.
    pub image_accuracy: f64,
    /// The L2 strength every fold used (the one the fit chose).
    pub l2: f32,
    /// Classes whose images are one group: trained on in every fold, never scored.
    pub not_scored: Vec<String>,
    /// The out-of-fold report over distinct photos (confusion, per class, calibration).
    pub report: Report,
}

/// Grouped, stratified k-fold cross-validation of the head at strength `l2` on rows `x`, labels
/// `y` (class indices below `classes.len()`) and a near-duplicate group id per row. Every group
/// lands in one fold; the folds are dealt class by class from `seed`. `reason` is recorded.
pub fn grouped_cv(
    x: ArrayView2<f32>,
    y: &[usize],
    groups: &[usize],
    classes: &[String],
    params: &SoftmaxValidParams,
    l2: f32,
    reason: String,
) -> Result<Estimate> {
    let k = classes.len();
    if y.len() != x.nrows() || groups.len() != y.len() {
        return Err(Error::config(
            format!(
                "grouped cross-validation got {} rows, {} labels and {} group ids",
                x.nrows(),
                y.len(),
                groups.len()
            ),
            None,
        ));
    }
    let fixed = params.with_fixed_l2(l2, k).ok_or_else(|| {
        Error::config(
            format!("grouped cross-validation needs a positive L2 strength, got {l2}"),
            None,
        )
    })?;
    // Distinct groups per class (a group's class is its first row's).
    let mut class_of: HashMap<usize, usize> = HashMap::new();
    for (&g, &c) in groups.iter().zip(y) {
        class_of.entry(g).or_insert(c);
    }
    let mut per_class = vec![0usize; k];
    for &c in class_of.values() {
        per_class[c] += 1;
    }
    let scored: Vec<bool> = per_class.iter().map(|&n| n >= 2).collect();
    let not_scored: Vec<String> = (0..k)
        .filter(|&c| !scored[c] && per_class[c] > 0)
        .map(|c| classes[c].clone())
        .collect();
    let folds = (0..k)
        .filter(|&c| scored[c])
        .map(|c| per_class[c])
        .min()
        .map_or(0, |n| n.min(DEFAULT_FOLDS));
    if folds < 2 {
        return Err(Error::config(
            "no class has two distinct photos (near-duplicate groups), so none can be held out while it is trained on",
            Some("add photos that are not copies of one another".into()),
        ));
    }
    // Rows of classes that cannot be scored are dealt no fold: they train in every fold.
    let (rows, labels, units): (Vec<usize>, Vec<usize>, Vec<usize>) = (0..y.len())
        .filter(|&i| scored[y[i]])
        .map(|i| (i, y[i], groups[i]))
        .fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut r, mut l, mut u), (i, c, g)| {
                r.push(i);
                l.push(c);
                u.push(g);
                (r, l, u)
            },
        );
    let dealt = crate::shuffle::stratified_group_folds(&labels, &units, folds, params.seed());
    let mut fold_of = vec![usize::MAX; y.len()];
    for (&i, &f) in rows.iter().zip(&dealt) {
        fold_of[i] = f;
    }

    let mut proba = Array2::<f32>::zeros((y.len(), k));
    for f in 0..folds {
        let train: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] != f).collect();
        let held: Vec<usize> = (0..y.len()).filter(|&i| fold_of[i] == f).collect();
        let tx = x.select(Axis(0), &train);
        let ty: Vec<usize> = train.iter().map(|&i| y[i]).collect();
        let fitted = crate::head::fit(tx.view(), &ty, &fixed)?;
        let p = fitted.head.predict_proba(x.select(Axis(0), &held).view());
        for (r, &i) in held.iter().enumerate() {
            proba.row_mut(i).assign(&p.row(r));
        }
    }
    let proba = proba.select(Axis(0), &rows);
    let by_image = crate::metrics::evaluate(&labels, proba.view(), classes)?;
    // One vote per photo: the mean probabilities of its copies.
    let mut order: Vec<usize> = Vec::new();
    let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
    for (r, &u) in units.iter().enumerate() {
        members
            .entry(u)
            .or_insert_with(|| {
                order.push(u);
                Vec::new()
            })
            .push(r);
    }
    let photo_proba = Array2::from_shape_fn((order.len(), k), |(p, c)| {
        let m = &members[&order[p]];
        m.iter().map(|&r| proba[[r, c]]).sum::<f32>() / m.len() as f32
    });
    let photo_labels: Vec<usize> = order.iter().map(|u| labels[members[u][0]]).collect();
    let report = crate::metrics::evaluate(&photo_labels, photo_proba.view(), classes)?;
    Ok(Estimate {
        method: "grouped_cv".into(),
        reason,
        folds,
        images: rows.len(),
        photos: order.len(),
        accuracy: report.accuracy,
        accuracy_ci95: wilson(report.accuracy, order.len()),
        macro_f1: report.macro_f1,
        image_accuracy: by_image.accuracy,
        l2,
        not_scored,
        report,
    })
}

/// A unit id per sample: the first sample of its near-duplicate group (`groups`: sample indices,
/// as [`crate::split::GroupedSplit::groups`]), or the sample itself.
pub fn units(samples: usize, groups: &[Vec<usize>]) -> Vec<usize> {
    let mut unit: Vec<usize> = (0..samples).collect();
    for g in groups {
        if let Some(&first) = g.first() {
            for &i in g {
                if let Some(u) = unit.get_mut(i) {
                    *u = first;
                }
            }
        }
    }
    unit
}

/// One part of a fit's rows: vectors, labels and unit ids ([`units`]).
pub struct Rows<'a> {
    /// One vector per row.
    pub x: &'a [Vec<f32>],
    /// Class index per row.
    pub y: &'a [usize],
    /// Unit (near-duplicate group) id per row.
    pub units: &'a [usize],
}

/// `fit`'s rule: when the held-out rows are fewer than [`MIN_HELD_OUT_PHOTOS`] distinct photos,
/// [`grouped_cv`] over training and held-out rows together at strength `l2`; `None` otherwise
/// (or without held-out rows).
pub fn when_held_out_is_small(
    train: Rows,
    held_out: Rows,
    classes: &[String],
    params: &SoftmaxValidParams,
    l2: f32,
) -> Result<Option<Estimate>> {
    let photos = held_out
        .units
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if held_out.y.is_empty() || photos >= MIN_HELD_OUT_PHOTOS {
        return Ok(None);
    }
    let reason = format!(
        "the {} held-out image(s) are {photos} distinct photo(s), fewer than {MIN_HELD_OUT_PHOTOS}: one photo right or wrong moves their accuracy by {:.0} points, so every photo is held out once instead",
        held_out.y.len(),
        100.0 / photos as f64
    );
    let d = train.x.first().or(held_out.x.first()).map_or(0, Vec::len);
    let n = train.y.len() + held_out.y.len();
    let flat: Vec<f32> = train
        .x
        .iter()
        .chain(held_out.x)
        .flatten()
        .copied()
        .collect();
    let x = Array2::from_shape_vec((n, d), flat)
        .map_err(|e| Error::config(format!("feature rows of unequal length: {e}"), None))?;
    let y: Vec<usize> = train.y.iter().chain(held_out.y).copied().collect();
    let u: Vec<usize> = train.units.iter().chain(held_out.units).copied().collect();
    grouped_cv(x.view(), &y, &u, classes, params, l2, reason).map(Some)
}

impl Estimate {
    /// The estimate for people, beside the held-out part's accuracy.
    pub fn human(&self, held_out_accuracy: Option<f64>) -> String {
        let mut s = format!(
            "accuracy {:.3} (95% interval {:.3}–{:.3}), macro-F1 {:.3}: grouped {}-fold cross-validation, each of {} distinct photos ({} images) held out once, copies of a photo always in one fold and voting as one photo (image by image: {:.3})",
            self.accuracy,
            self.accuracy_ci95[0],
            self.accuracy_ci95[1],
            self.macro_f1,
            self.folds,
            self.photos,
            self.images,
            self.image_accuracy
        );
        s.push_str(&format!("\nwhy: {}", self.reason));
        if let Some(a) = held_out_accuracy {
            s.push_str(&format!("; the held-out part alone says {a:.3}"));
        }
        if !self.not_scored.is_empty() {
            s.push_str(&format!(
                "\nnot scored (all images one photo, trained on in every fold): {}",
                self.not_scored.join(", ")
            ));
        }
        s
    }
}

/// The 95% Wilson score interval of a proportion `p` observed over `n` trials.
pub fn wilson(p: f64, n: usize) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (n, z) = (n as f64, 1.959_964);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n);
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::SoftmaxParams;
    use linfa::ParamGuard;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("c{c}")).collect()
    }

    #[test]
    fn wilson_interval_is_ordered_and_shrinks_with_n() {
        let a = wilson(0.8, 10);
        let b = wilson(0.8, 1000);
        assert!(a[0] < 0.8 && 0.8 < a[1]);
        assert!(b[1] - b[0] < a[1] - a[0]);
        assert_eq!(wilson(1.0, 5)[1], 1.0);
    }

    /// Copies of a photo score each other perfectly; grouped folds do not let them. Each class
    /// is 4 "photos" (random points), each with 10 near-identical copies; the photos of the two
    /// classes are drawn from the same distribution, so nothing generalises: a leaky estimate says
    /// about 1.0, the grouped one about chance.
    #[test]
    fn grouped_folds_do_not_let_copies_score_each_other() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (d, photos, copies) = (16, 4, 10);
        let mut rows = Vec::new();
        let (mut y, mut g) = (Vec::new(), Vec::new());
        for c in 0..2 {
            for p in 0..photos {
                let base: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
                for _ in 0..copies {
                    rows.extend(base.iter().map(|v| v + rng.gen_range(-0.01..0.01)));
                    y.push(c);
                    g.push(c * photos + p);
                }
            }
        }
        let x = Array2::from_shape_vec((y.len(), d), rows).unwrap();
        let params = SoftmaxParams::new().l2(0.01).check().unwrap();
        let grouped =
            grouped_cv(x.view(), &y, &g, &names(2), &params, 0.01, String::new()).unwrap();
        assert_eq!((grouped.folds, grouped.photos, grouped.images), (4, 8, 80));
        let singletons: Vec<usize> = (0..y.len()).collect();
        let leaky = grouped_cv(
            x.view(),
            &y,
            &singletons,
            &names(2),
            &params,
            0.01,
            String::new(),
        )
        .unwrap();
        assert!(leaky.accuracy > 0.95, "leaky {}", leaky.accuracy);
        assert!(grouped.accuracy < 0.8, "grouped {}", grouped.accuracy);
    }

    #[test]
    fn a_class_that_is_one_group_is_trained_on_but_not_scored() {
        let x = Array2::from_shape_fn((9, 2), |(i, j)| (i * 2 + j) as f32 * 0.1);
        let y = [0, 0, 0, 1, 1, 1, 2, 2, 2];
        let g = [0, 1, 2, 3, 4, 5, 6, 6, 6];
        let params = SoftmaxParams::new().l2(1.0).check().unwrap();
        let e = grouped_cv(x.view(), &y, &g, &names(3), &params, 1.0, String::new()).unwrap();
        assert_eq!(e.not_scored, vec!["c2".to_string()]);
        assert_eq!(e.images, 6);
        assert_eq!(e.folds, 3);
        let none = grouped_cv(
            x.view(),
            &y,
            &[0; 9],
            &names(3),
            &params,
            1.0,
            String::new(),
        );
        assert!(none.is_err());
    }
}

//! The statistics of `qcyn compare`: a 95% interval over repeated random splits, and when one
//! recipe is "within noise" of another.
//!
//! Repeats of a random hold-out split share most of their training images, so their scores are not
//! independent and a plain t-interval over repeats is too narrow. qcyn uses the corrected
//! resampled t-interval of Nadeau & Bengio (2003, "Inference for the generalization error"):
//!
//! ```text
//! mean ± t(0.975, R − 1) · sqrt((1/R + n_val/n_train) · s²)
//! ```
//!
//! with `s²` the sample variance of the `R` repeats' scores and `n_val/n_train` the mean ratio of
//! validation to training images per repeat; the interval is clipped to [0, 1]. Two recipes are
//! compared *paired*, on the same splits: the same interval is taken of the per-repeat
//! differences, and a recipe is within noise of the best when that interval contains 0.

/// Two-sided 97.5% quantiles of Student's t for 1 to 30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The 0.975 quantile of Student's t with `df` degrees of freedom (a table to 30, then the
/// Cornish–Fisher expansion, within 0.001 of the exact value).
pub fn t975(df: usize) -> f64 {
    match df {
        0 => f64::INFINITY,
        1..=30 => T975[df - 1],
        _ => {
            let (z, v) = (1.959_964f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * v)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v)
        }
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Half-width of the corrected resampled 95% t-interval of `xs` (see the module docs);
/// `val_over_train` is the mean `n_val / n_train` of the repeats.
pub fn half_width(xs: &[f64], val_over_train: f64) -> f64 {
    let r = xs.len();
    if r < 2 {
        return f64::INFINITY;
    }
    let (_, sd) = mean_sd(xs);
    t975(r - 1) * ((1.0 / r as f64 + val_over_train) * sd * sd).sqrt()
}

/// The interval `[lo, hi]` of `xs`, clipped to [0, 1].
pub fn interval(xs: &[f64], val_over_train: f64) -> [f64; 2] {
    let (mean, _) = mean_sd(xs);
    let h = half_width(xs, val_over_train);
    [(mean - h).max(0.0), (mean + h).min(1.0)]
}

/// The paired difference `best − other` over the same repeats: its mean and half-width. `other`
/// is within noise of `best` when the mean is at most the half-width.
pub fn paired_difference(best: &[f64], other: &[f64], val_over_train: f64) -> (f64, f64) {
    let d: Vec<f64> = best.iter().zip(other).map(|(a, b)| a - b).collect();
    (mean_sd(&d).0, half_width(&d, val_over_train))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_and_the_corrected_interval() {
        assert_eq!(t975(4), 2.776);
        assert!((t975(31) - 2.0395).abs() < 1e-3);
        assert!((t975(120) - 1.9799).abs() < 1e-3);
        // 5 repeats 0.8, 0.9, 0.9, 1.0, 0.9: mean 0.9, s² = 0.005; n_val/n_train = 0.25:
        // half = 2.776 · sqrt((0.2 + 0.25) · 0.005) = 2.776 · 0.047434 = 0.131677.
        let xs = [0.8, 0.9, 0.9, 1.0, 0.9];
        let h = half_width(&xs, 0.25);
        assert!((h - 0.131677).abs() < 1e-5, "{h}");
        let [lo, hi] = interval(&xs, 0.25);
        assert!((lo - (0.9 - h)).abs() < 1e-12 && hi == 1.0, "clipped to 1");
        // Without the correction the interval would be narrower.
        assert!(half_width(&xs, 0.0) < h);
    }

    #[test]
    fn paired_differences_decide_ties() {
        // Always 0.01 behind: no noise, so not a tie.
        let a = [0.90, 0.95, 0.92];
        let b = [0.89, 0.94, 0.91];
        let (d, h) = paired_difference(&a, &b, 0.25);
        assert!((d - 0.01).abs() < 1e-12 && h < 1e-12);
        // Behind on two, ahead on one: within noise.
        let c = [0.88, 0.97, 0.90];
        let (d, h) = paired_difference(&a, &c, 0.25);
        assert!(d <= h, "{d} {h}");
    }
}

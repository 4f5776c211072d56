//! Evaluate: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, log loss, the
//! direction errors lean and calibration, from true labels and predicted probabilities.
//! [`Report`] serialises to JSON for programs; [`Report::human`] renders it for people.
//!
//! Calibration ([`Calibration`]) is of the top label: an image's confidence is its highest
//! probability, and it is right when that class is the true one. Confidences are put in
//! [`CALIBRATION_BINS`] equal-width bins (bin `b` holds confidences in `(b/10, (b+1)/10]`, the first
//! bin also 0); the expected calibration error is `Σ_b (n_b / n) · |accuracy_b − confidence_b|`
//! (Guo et al. 2017). Per class, the same is computed over the images *predicted* as that class:
//! "when it says `bees` with 90% confidence, is it right 90% of the time?". [`label_scores`] scores
//! bare labels where some images have no prediction (they count as wrong).
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1]` before taking the log.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Metrics of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Of the images predicted as this class, the share that are (0 when none were predicted).
    pub precision: f64,
    /// Of the images of this class, the share predicted as it (0 when it has none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Images of this class evaluated.
    pub support: usize,
}

/// One class's recall, for the spread in [`Bias`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRecall {
    /// Class name.
    pub class: String,
    /// Its recall.
    pub recall: f64,
}

/// Which way the errors lean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bias {
    /// Number of wrong predictions.
    pub errors: usize,
    /// The predicted class that received the most wrong predictions (`None` when there are no
    /// errors; ties go to the lower class index).
    pub leans_toward: Option<String>,
    /// How many wrong predictions went to it.
    pub count: usize,
    /// Its share of all errors (0 when there are none).
    pub share: f64,
    /// The class with the lowest recall (among classes with images).
    pub lowest_recall: Option<ClassRecall>,
    /// The class with the highest recall (among classes with images).
    pub highest_recall: Option<ClassRecall>,
    /// Highest minus lowest recall.
    pub recall_spread: f64,
}

/// An evaluation of predictions against true labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Share of images whose most probable class is the true one.
    pub accuracy: f64,
    /// Mean F1 over the classes that occur in the labels or the predictions.
    pub macro_f1: f64,
    /// Mean of −ln p(true class), with p clipped to `[1e-15, 1]`.
    pub log_loss: f64,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Metrics per class, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Images evaluated.
    pub n: usize,
    /// Where the errors lean.
    pub bias: Bias,
    /// Top-label calibration over all images, and per predicted class (absent in reports made
    /// without probabilities, and in bundles written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// Number of equal-width confidence bins of [`Calibration`].
pub const CALIBRATION_BINS: usize = 10;

/// One confidence bin of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge of the bin (exclusive, except 0).
    pub lo: f64,
    /// Upper edge (inclusive).
    pub hi: f64,
    /// Images whose confidence falls in the bin.
    pub count: usize,
    /// Their mean confidence (0 when the bin is empty).
    pub mean_confidence: f64,
    /// The share of them predicted right (0 when the bin is empty).
    pub accuracy: f64,
}

/// Calibration of a set of predictions: expected calibration error and the reliability table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationTable {
    /// Images in the set.
    pub n: usize,
    /// Their mean confidence (the top probability).
    pub mean_confidence: f64,
    /// The share of them predicted right.
    pub accuracy: f64,
    /// Expected calibration error over [`CALIBRATION_BINS`] equal-width bins.
    pub ece: f64,
    /// Every bin, empty ones included, from low to high confidence.
    pub reliability: Vec<ReliabilityBin>,
}

/// The calibration of one predicted class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassCalibration {
    /// Class name.
    pub class: String,
    /// Over the images predicted as this class (`n` = 0 when none were).
    #[serde(flatten)]
    pub table: CalibrationTable,
}

/// Top-label calibration: over all images, and per predicted class (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Expected calibration error over all images (the same as `all.ece`).
    pub ece: f64,
    /// Over all images.
    pub all: CalibrationTable,
    /// Per predicted class, in label order.
    pub per_class: Vec<ClassCalibration>,
}

/// The calibration table of (confidence, right) pairs.
pub fn calibration_table(points: &[(f64, bool)]) -> CalibrationTable {
    let mut count = [0usize; CALIBRATION_BINS];
    let mut conf = [0f64; CALIBRATION_BINS];
    let mut right = [0usize; CALIBRATION_BINS];
    for &(c, ok) in points {
        let c = c.clamp(0.0, 1.0);
        // (b/10, (b+1)/10]: ceil(10c) − 1, with 0 in the first bin.
        let b = ((c * CALIBRATION_BINS as f64).ceil() as usize)
            .saturating_sub(1)
            .min(CALIBRATION_BINS - 1);
        count[b] += 1;
        conf[b] += c;
        right[b] += usize::from(ok);
    }
    let n = points.len();
    let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    let reliability: Vec<ReliabilityBin> = (0..CALIBRATION_BINS)
        .map(|b| ReliabilityBin {
            lo: b as f64 / CALIBRATION_BINS as f64,
            hi: (b + 1) as f64 / CALIBRATION_BINS as f64,
            count: count[b],
            mean_confidence: ratio(conf[b], count[b]),
            accuracy: ratio(right[b] as f64, count[b]),
        })
        .collect();
    let ece = reliability
        .iter()
        .map(|r| ratio(r.count as f64, n) * (r.accuracy - r.mean_confidence).abs())
        .sum();
    CalibrationTable {
        n,
        mean_confidence: ratio(conf.iter().sum(), n),
        accuracy: ratio(right.iter().sum::<usize>() as f64, n),
        ece,
        reliability,
    }
}

/// Top-label calibration of predictions: `(true class, predicted class, confidence)` per image.
pub fn calibration(predictions: &[(usize, usize, f64)], classes: &[String]) -> Calibration {
    let points: Vec<(f64, bool)> = predictions.iter().map(|&(t, p, c)| (c, t == p)).collect();
    let all = calibration_table(&points);
    let per_class = classes
        .iter()
        .enumerate()
        .map(|(k, class)| {
            let mine: Vec<(f64, bool)> = predictions
                .iter()
                .filter(|&&(_, p, _)| p == k)
                .map(|&(t, p, c)| (c, t == p))
                .collect();
            ClassCalibration {
                class: class.clone(),
                table: calibration_table(&mine),
            }
        })
        .collect();
    Calibration {
        ece: all.ece,
        all,
        per_class,
    }
}

/// Accuracy and macro-F1 of bare labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    /// Share of images predicted right; an image without a prediction is wrong.
    pub accuracy: f64,
    /// Mean F1 over the classes that occur in the labels or the predictions; an image without a
    /// prediction is a miss of its true class (it lowers that class's recall) and a false positive
    /// of none.
    pub macro_f1: f64,
    /// Images scored.
    pub n: usize,
    /// Of them, images without a prediction.
    pub unpredicted: usize,
}

/// Scores predicted labels against true ones; `None` is an image that got no prediction (it could
/// not be decoded, or had no face): it counts as wrong, never as left out.
pub fn label_scores(y_true: &[usize], y_pred: &[Option<usize>], k: usize) -> LabelScores {
    assert_eq!(y_true.len(), y_pred.len(), "one prediction per label");
    let mut tp = vec![0usize; k];
    let mut support = vec![0usize; k];
    let mut predicted = vec![0usize; k];
    let mut unpredicted = 0;
    for (&t, p) in y_true.iter().zip(y_pred) {
        support[t] += 1;
        match *p {
            Some(p) => {
                predicted[p] += 1;
                if p == t {
                    tp[t] += 1;
                }
            }
            None => unpredicted += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let occurring: Vec<usize> = (0..k)
        .filter(|&c| support[c] > 0 || predicted[c] > 0)
        .collect();
    let f1 = |c: usize| {
        let (p, r) = (ratio(tp[c], predicted[c]), ratio(tp[c], support[c]));
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    };
    LabelScores {
        accuracy: ratio(tp.iter().sum(), y_true.len()),
        macro_f1: occurring.iter().map(|&c| f1(c)).sum::<f64>() / occurring.len().max(1) as f64,
        n: y_true.len(),
        unpredicted,
    }
}

/// The checks every evaluation makes first: one label per row, one column per class, at least one
/// image, labels in range. Returns (rows, classes).
fn check_inputs(
    y_true: &[usize],
    proba: ArrayView2<f32>,
    classes: &[String],
) -> Result<(usize, usize)> {
    let (n, k) = proba.dim();
    if n != y_true.len() {
        return Err(Error::config(
            format!("{} labels but {n} rows of probabilities", y_true.len()),
            None,
        ));
    }
    if k != classes.len() {
        return Err(Error::config(
            format!(
                "{} class names but {k} columns of probabilities",
                classes.len()
            ),
            None,
        ));
    }
    if n == 0 {
        return Err(Error::config(
            "no images to evaluate",
            Some("hold out at least one image per class".into()),
        ));
    }
    if let Some((i, &c)) = y_true.iter().enumerate().find(|(_, &c)| c >= k) {
        return Err(Error::config(
            format!("label {c} of image {i} is out of range for {k} classes"),
            None,
        ));
    }
    Ok((n, k))
}

/// Evaluates probabilities `proba` (one row per image, one column per class) against labels
/// `y_true`. The predicted class is the most probable one (the lowest index on a tie).
pub fn evaluate(y_true: &[usize], proba: ArrayView2<f32>, classes: &[String]) -> Result<Report> {
    let (n, k) = check_inputs(y_true, proba, classes)?;
    let mut confusion = vec![vec![0usize; k]; k];
    let mut log_loss = 0.0;
    let mut predictions = Vec::with_capacity(n);
    for (row, &t) in proba.rows().into_iter().zip(y_true) {
        let mut pred = 0;
        for (j, &p) in row.iter().enumerate() {
            if p > row[pred] {
                pred = j;
            }
        }
        confusion[t][pred] += 1;
        log_loss -= (row[t] as f64).clamp(LOG_LOSS_EPS, 1.0).ln();
        predictions.push((t, pred, row[pred] as f64));
    }
    let mut report = from_confusion(confusion, classes, log_loss / n as f64);
    report.calibration = Some(calibration(&predictions, classes));
    Ok(report)
}

/// Evaluates image-level predictions, some of which name no class (a face model's `unknown` or
/// `no_face`, or an image that could not be read): `y_pred[i]` is image `i`'s class or `None`,
/// `proba` one row per image (the probabilities shown with it; for an image without any, pass a
/// uniform row). An image without a class counts as wrong: in the accuracy, in its class's recall
/// and in `n`, never in any class's precision. The confusion matrix keeps one column per class
/// (such images are in no column, so a row can sum to less than its support); the log loss uses
/// every row.
pub fn evaluate_predictions(
    y_true: &[usize],
    y_pred: &[Option<usize>],
    proba: ArrayView2<f32>,
    classes: &[String],
) -> Result<Report> {
    if y_pred.len() != y_true.len() {
        return Err(Error::config(
            format!("{} labels but {} predictions", y_true.len(), y_pred.len()),
            None,
        ));
    }
    let (n, k) = check_inputs(y_true, proba, classes)?;
    if let Some((i, &c)) = y_true
        .iter()
        .chain(y_pred.iter().flatten())
        .enumerate()
        .find(|(_, &c)| c >= k)
    {
        return Err(Error::config(
            format!("label {c} of image {i} is out of range for {k} classes"),
            None,
        ));
    }
    // One extra column for "no class": counted in `n` and the supports, then dropped.
    let mut confusion = vec![vec![0usize; k + 1]; k];
    let mut log_loss = 0.0;
    let mut predictions = Vec::with_capacity(n);
    for ((row, &t), p) in proba.rows().into_iter().zip(y_true).zip(y_pred) {
        confusion[t][p.unwrap_or(k)] += 1;
        log_loss -= (row[t] as f64).clamp(LOG_LOSS_EPS, 1.0).ln();
        if let Some(p) = *p {
            predictions.push((t, p, row[p] as f64));
        }
    }
    let mut report = from_confusion(confusion, classes, log_loss / n as f64);
    for row in report.confusion.iter_mut() {
        row.truncate(k);
    }
    report.calibration = Some(calibration(&predictions, classes));
    Ok(report)
}

/// Builds a report from a confusion matrix (`confusion[true][predicted]`) and a log loss.
pub fn from_confusion(confusion: Vec<Vec<usize>>, classes: &[String], log_loss: f64) -> Report {
    let k = classes.len();
    let n: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
    let support: Vec<usize> = confusion.iter().map(|r| r.iter().sum()).collect();
    let predicted: Vec<usize> = (0..k)
        .map(|c| confusion.iter().map(|r| r[c]).sum())
        .collect();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let precision = ratio(confusion[c][c], predicted[c]);
            let recall = ratio(confusion[c][c], support[c]);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassMetrics {
                class: classes[c].clone(),
                precision,
                recall,
                f1,
                support: support[c],
            }
        })
        .collect();
    let occurring: Vec<usize> = (0..k)
        .filter(|&c| support[c] > 0 || predicted[c] > 0)
        .collect();
    let macro_f1 =
        occurring.iter().map(|&c| per_class[c].f1).sum::<f64>() / occurring.len().max(1) as f64;

    let wrong_to: Vec<usize> = (0..k).map(|c| predicted[c] - confusion[c][c]).collect();
    let errors = n - correct;
    let mut lean = 0;
    for c in 0..k {
        if wrong_to[c] > wrong_to[lean] {
            lean = c;
        }
    }
    let recalls: Vec<(usize, f64)> = (0..k)
        .filter(|&c| support[c] > 0)
        .map(|c| (c, per_class[c].recall))
        .collect();
    let lowest = recalls
        .iter()
        .copied()
        .reduce(|a, b| if b.1 < a.1 { b } else { a });
    let highest = recalls
        .iter()
        .copied()
        .reduce(|a, b| if b.1 > a.1 { b } else { a });
    let named = |x: Option<(usize, f64)>| {
        x.map(|(c, recall)| ClassRecall {
            class: classes[c].clone(),
            recall,
        })
    };
    let bias = Bias {
        errors,
        leans_toward: (errors > 0).then(|| classes[lean].clone()),
        count: if errors > 0 { wrong_to[lean] } else { 0 },
        share: ratio(if errors > 0 { wrong_to[lean] } else { 0 }, errors),
        recall_spread: match (lowest, highest) {
            (Some(l), Some(h)) => h.1 - l.1,
            _ => 0.0,
        },
        lowest_recall: named(lowest),
        highest_recall: named(highest),
    };
    Report {
        accuracy: ratio(correct, n),
        macro_f1,
        log_loss,
        classes: classes.to_vec(),
        per_class,
        confusion,
        n,
        bias,
        calibration: None,
    }
}

impl Calibration {
    /// The reliability table and one line per predicted class.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "calibration: expected calibration error {:.3} (top-label, {CALIBRATION_BINS} equal-width bins); mean confidence {:.3} vs accuracy {:.3}",
            self.ece, self.all.mean_confidence, self.all.accuracy
        );
        let _ = writeln!(
            out,
            "{:>11}  {:>5}  {:>10}  {:>8}",
            "confidence", "count", "mean conf.", "accuracy"
        );
        for b in self.all.reliability.iter().filter(|b| b.count > 0) {
            let _ = writeln!(
                out,
                "{:>11}  {:>5}  {:>10.3}  {:>8.3}",
                format!("{:.1}–{:.1}", b.lo, b.hi),
                b.count,
                b.mean_confidence,
                b.accuracy
            );
        }
        let name_w = self
            .per_class
            .iter()
            .map(|c| c.class.chars().count())
            .max()
            .unwrap_or(0)
            .max(15);
        let _ = writeln!(
            out,
            "{:<name_w$}  {:>9}  {:>10}  {:>8}  {:>5}",
            "predicted class", "predicted", "mean conf.", "accuracy", "ECE"
        );
        for c in &self.per_class {
            let t = &c.table;
            let _ = writeln!(
                out,
                "{:<name_w$}  {:>9}  {:>10.3}  {:>8.3}  {:>5.3}",
                c.class, t.n, t.mean_confidence, t.accuracy, t.ece
            );
        }
        out
    }
}

impl Report {
    /// The number of correct predictions.
    pub fn correct(&self) -> usize {
        (0..self.classes.len()).map(|c| self.confusion[c][c]).sum()
    }

    /// One sentence on where the errors lean.
    pub fn bias_sentence(&self) -> String {
        let b = &self.bias;
        let Some(lean) = &b.leans_toward else {
            return "no errors.".into();
        };
        let mut s = format!(
            "errors lean toward `{lean}`: {} of {} wrong predictions ({:.0}%) were `{lean}`",
            b.count,
            b.errors,
            b.share * 100.0
        );
        if let (Some(lo), Some(hi)) = (&b.lowest_recall, &b.highest_recall) {
            s.push_str(&format!(
                "; recall ranges from {:.3} (`{}`) to {:.3} (`{}`)",
                lo.recall, lo.class, hi.recall, hi.class
            ));
        }
        s.push('.');
        s
    }

    /// A readable report: summary line, per-class table, confusion matrix and a bias sentence.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "accuracy {:.3} ({}/{})   macro-F1 {:.3}   log loss {:.4}",
            self.accuracy,
            self.correct(),
            self.n,
            self.macro_f1,
            self.log_loss
        );
        out.push('\n');
        let name_w = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let _ = writeln!(
            out,
            "{:<name_w$}  {:>9}  {:>6}  {:>6}  {:>7}",
            "class", "precision", "recall", "f1", "support"
        );
        for m in &self.per_class {
            let _ = writeln!(
                out,
                "{:<name_w$}  {:>9.3}  {:>6.3}  {:>6.3}  {:>7}",
                m.class, m.precision, m.recall, m.f1, m.support
            );
        }
        out.push('\n');
        out.push_str("confusion matrix (rows: true class, columns: predicted)\n");
        // Columns are numbered; the row labels give the number and the name.
        let count_w = self
            .confusion
            .iter()
            .flatten()
            .max()
            .map_or(1, |m| m.to_string().len());
        let col_w = count_w
            .max(self.classes.len().saturating_sub(1).to_string().len())
            .max(2);
        let idx_w = self.classes.len().saturating_sub(1).to_string().len();
        let label_w = idx_w + 1 + name_w;
        let _ = write!(out, "{:<label_w$}", "");
        for c in 0..self.classes.len() {
            let _ = write!(out, " {c:>col_w$}");
        }
        out.push('\n');
        for (c, row) in self.confusion.iter().enumerate() {
            let _ = write!(
                out,
                "{:<label_w$}",
                format!("{c:>idx_w$} {}", self.classes[c])
            );
            for v in row {
                let _ = write!(out, " {v:>col_w$}");
            }
            out.push('\n');
        }
        out.push('\n');
        let _ = writeln!(out, "bias: {}", self.bias_sentence());
        if let Some(cal) = &self.calibration {
            out.push('\n');
            out.push_str(&cal.human());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("c{c}")).collect()
    }

    #[test]
    fn ece_matches_a_hand_computed_example() {
        // (true, probabilities) → (predicted, confidence, right, bin):
        //   0, [.95 .05] → 0, .95, right, 9        1, [.85 .15] → 0, .85, wrong, 8
        //   1, [.25 .75] → 1, .75, right, 7        0, [.35 .65] → 1, .65, wrong, 6
        //   1, [.32 .68] → 1, .68, right, 6
        // ECE = 1/5·|1−.95| + 1/5·|0−.85| + 1/5·|1−.75| + 2/5·|.5−.665| = .01+.17+.05+.066 = .296
        let proba = array![
            [0.95f32, 0.05],
            [0.85, 0.15],
            [0.25, 0.75],
            [0.35, 0.65],
            [0.32, 0.68]
        ];
        let r = evaluate(&[0, 1, 1, 0, 1], proba.view(), &names(2)).unwrap();
        let cal = r
            .calibration
            .clone()
            .expect("evaluate computes calibration");
        assert!((cal.ece - 0.296).abs() < 1e-6, "{}", cal.ece);
        let bins: Vec<usize> = cal.all.reliability.iter().map(|b| b.count).collect();
        assert_eq!(bins, [0, 0, 0, 0, 0, 0, 2, 1, 1, 1]);
        let six = &cal.all.reliability[6];
        assert!((six.mean_confidence - 0.665).abs() < 1e-6 && six.accuracy == 0.5);
        assert!((six.lo - 0.6).abs() < 1e-12 && (six.hi - 0.7).abs() < 1e-12);
        // Predicted as c0: .95 right, .85 wrong → ½·.05 + ½·.85 = .45.
        // Predicted as c1: .75 right; .65 wrong + .68 right → ⅓·.25 + ⅔·.165 = .19333…
        assert_eq!(cal.per_class[0].table.n, 2);
        assert!((cal.per_class[0].table.ece - 0.45).abs() < 1e-6);
        assert!((cal.per_class[1].table.ece - (0.25 / 3.0 + 0.33 / 3.0)).abs() < 1e-6);
        assert!((cal.per_class[0].table.accuracy - 0.5).abs() < 1e-12);
        assert!(r.human().contains("expected calibration error 0.296"));
    }

    #[test]
    fn calibration_bins_take_their_upper_edge_and_zero() {
        let t = calibration_table(&[(0.0, false), (0.5, true), (1.0, true)]);
        assert_eq!(t.reliability[0].count, 1);
        assert_eq!(t.reliability[4].count, 1, "0.5 is in (0.4, 0.5]");
        assert_eq!(t.reliability[9].count, 1);
        // Perfectly calibrated: every bin's accuracy equals its confidence.
        let t = calibration_table(&[(1.0, true), (1.0, true)]);
        assert_eq!(t.ece, 0.0);
        assert_eq!(calibration_table(&[]).ece, 0.0);
    }

    #[test]
    fn label_scores_count_images_without_a_prediction_as_misses() {
        // c0: 1 right of 2 (one unpredicted), predicted twice → P ½, R ½, F1 ½.
        // c1: 1 right of 2, predicted once → P 1, R ½, F1 ⅔.
        let s = label_scores(&[0, 0, 1, 1], &[Some(0), None, Some(1), Some(0)], 2);
        assert_eq!(s.accuracy, 0.5);
        assert!((s.macro_f1 - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!((s.n, s.unpredicted), (4, 1));
        // The same images through the confusion-matrix path agree when all are predicted.
        let s = label_scores(&[0, 1], &[Some(0), Some(0)], 2);
        let r = from_confusion(vec![vec![1, 0], vec![1, 0]], &names(2), 0.0);
        assert_eq!((s.accuracy, s.macro_f1), (r.accuracy, r.macro_f1));
    }
}

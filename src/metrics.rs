//! Evaluate: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, log loss and the
//! direction errors lean, from true labels and predicted probabilities. [`Report`] serialises to
//! JSON for programs; [`Report::human`] renders it for people.
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
}

/// Evaluates probabilities `proba` (one row per image, one column per class) against labels
/// `y_true`. The predicted class is the most probable one (the lowest index on a tie).
pub fn evaluate(y_true: &[usize], proba: ArrayView2<f32>, classes: &[String]) -> Result<Report> {
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
    let mut confusion = vec![vec![0usize; k]; k];
    let mut log_loss = 0.0;
    for (row, &t) in proba.rows().into_iter().zip(y_true) {
        let mut pred = 0;
        for (j, &p) in row.iter().enumerate() {
            if p > row[pred] {
                pred = j;
            }
        }
        confusion[t][pred] += 1;
        log_loss -= (row[t] as f64).clamp(LOG_LOSS_EPS, 1.0).ln();
    }
    Ok(from_confusion(confusion, classes, log_loss / n as f64))
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
        out
    }
}

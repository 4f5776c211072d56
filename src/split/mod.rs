//! Split: a seeded, stratified split of a [`Dataset`]'s samples into train, validation and test
//! parts, made on paths before anything is decoded.
//!
//! - this file: the rule ([`SplitSpec`]), the split itself ([`Split`], [`stratified`]);
//! - [`manifest`]: the split written down as JSON, and matched back against a scanned dataset;
//! - [`lists`]: the tutorial's PaddleHub list files, read as a dataset with its split, or written.
//!
//! Each class is split on its own: its samples are sorted by path, shuffled by a ChaCha8 stream
//! derived from the seed and the class *name*, and dealt out test first, then validation, then
//! training. So the same seed gives the same split on every machine, and adding images to one
//! class never changes how another class was split.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::error::{Error, Result};

pub mod lists;
pub mod manifest;

/// How many images of each class are held out for validation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitRule {
    /// Hold out exactly `n` images of every class (the tutorial held out 20).
    ValPerClass {
        /// Images per class held out for validation.
        n: usize,
    },
    /// Hold out this fraction of every class, rounded per class, with at least one image
    /// validated and at least one trained on.
    ValFraction {
        /// Fraction in (0, 1).
        f: f64,
    },
}

impl SplitRule {
    /// The rule as the command-line option that asks for it (for messages).
    pub fn as_flag(&self) -> String {
        match self {
            SplitRule::ValPerClass { n } => format!("--val-per-class {n}"),
            SplitRule::ValFraction { f } => format!("--val-fraction {f}"),
        }
    }
}

/// Everything that decides a split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// How the validation part is chosen.
    pub rule: SplitRule,
    /// Images per class held out for a final test, on top of validation (none when `None`).
    #[serde(default)]
    pub test_per_class: Option<usize>,
    /// Seed of the shuffle.
    pub seed: u64,
}

/// Indices into [`Dataset::samples`], in ascending order inside each part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Samples to train on.
    pub train: Vec<usize>,
    /// Samples to validate on (model selection is never done on them: the head cross-validates
    /// on `train`).
    pub val: Vec<usize>,
    /// Samples for a final test.
    pub test: Vec<usize>,
}

impl Split {
    /// Total number of samples in the three parts.
    pub fn len(&self) -> usize {
        self.train.len() + self.val.len() + self.test.len()
    }

    /// Whether all three parts are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The three parts with their names (`train`, `val`, `test`).
    pub fn parts(&self) -> [(&'static str, &[usize]); 3] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
    }

    /// Number of samples per class in each part, as `[train, val, test]` per class.
    pub fn class_counts(&self, dataset: &Dataset) -> Vec<[usize; 3]> {
        let mut counts = vec![[0; 3]; dataset.classes.len()];
        for (p, (_, part)) in self.parts().iter().enumerate() {
            for &i in *part {
                counts[dataset.samples[i].class][p] += 1;
            }
        }
        counts
    }
}

/// Splits `dataset` per class as `spec` says.
///
/// Errors name every class that is too small for the request, with its count and the minimum it
/// needs; a class with a single image cannot be both trained on and validated.
pub fn stratified(dataset: &Dataset, spec: &SplitSpec) -> Result<Split> {
    match spec.rule {
        SplitRule::ValPerClass { n: 0 } => {
            return Err(Error::config(
                "--val-per-class must be at least 1",
                Some(
                    "accuracy is only reported on held-out images; hold out at least one per class"
                        .into(),
                ),
            ))
        }
        SplitRule::ValFraction { f } if !(f > 0.0 && f < 1.0) => {
            return Err(Error::config(
                format!("--val-fraction must be between 0 and 1 (exclusive), got {f}"),
                Some("for example --val-fraction 0.2 holds out a fifth of every class".into()),
            ))
        }
        _ => {}
    }
    let test = spec.test_per_class.unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); dataset.classes.len()];
    for (i, s) in dataset.samples.iter().enumerate() {
        let Some(list) = by_class.get_mut(s.class) else {
            return Err(Error::config(
                format!(
                    "sample {} has class index {} but the dataset has {} classes",
                    s.path.display(),
                    s.class,
                    dataset.classes.len()
                ),
                None,
            ));
        };
        list.push(i);
    }

    let mut problems = Vec::new();
    let mut plan = Vec::with_capacity(by_class.len());
    for (c, members) in by_class.iter().enumerate() {
        let name = &dataset.classes[c];
        let m = members.len();
        match m {
            0 => {
                problems.push(format!("class `{name}` has no images"));
                continue;
            }
            1 => {
                problems.push(format!(
                    "class `{name}` has a single image, so it cannot be both trained on and validated"
                ));
                continue;
            }
            _ => {}
        }
        let val = match spec.rule {
            SplitRule::ValPerClass { n } => {
                let need = n + test + 1;
                if m < need {
                    let held = if test > 0 {
                        format!(
                            "{} --test-per-class {test} needs at least {need} ({} held out + 1 to train)",
                            spec.rule.as_flag(),
                            n + test
                        )
                    } else {
                        format!(
                            "{} needs at least {need} ({n} held out + 1 to train)",
                            spec.rule.as_flag()
                        )
                    };
                    problems.push(format!("class `{name}` has {m} images; {held}"));
                    continue;
                }
                n
            }
            SplitRule::ValFraction { f } => {
                if m < test + 2 {
                    problems.push(format!(
                        "class `{name}` has {m} images; --test-per-class {test} with {} needs at least {} \
                         ({test} to test, 1 to validate, 1 to train)",
                        spec.rule.as_flag(),
                        test + 2
                    ));
                    continue;
                }
                let rest = m - test;
                ((f * m as f64).round() as usize).clamp(1, rest - 1)
            }
        };
        plan.push((c, val));
    }
    if !problems.is_empty() {
        let hint = match spec.rule {
            SplitRule::ValPerClass { .. } => {
                "add images to the classes named, lower --val-per-class, or use --val-fraction"
            }
            SplitRule::ValFraction { .. } => {
                "add images to the classes named, or leave the class out"
            }
        };
        return Err(Error::config(problems.join("; "), Some(hint.into())));
    }

    let mut split = Split::default();
    for (c, val) in plan {
        let mut members = by_class[c].clone();
        members.sort_by(|&a, &b| dataset.samples[a].path.cmp(&dataset.samples[b].path));
        crate::shuffle::shuffle(
            &mut members,
            &mut crate::shuffle::class_rng(spec.seed, &dataset.classes[c]),
        );
        split.test.extend_from_slice(&members[..test]);
        split.val.extend_from_slice(&members[test..test + val]);
        split.train.extend_from_slice(&members[test + val..]);
    }
    split.train.sort_unstable();
    split.val.sort_unstable();
    split.test.sort_unstable();
    Ok(split)
}

//! Split: a seeded, stratified split of a [`Dataset`]'s samples into train, validation and test
//! parts, made on paths before anything is decoded.
//!
//! - this file: the rule ([`SplitSpec`]), the split itself ([`Split`], [`stratified`]), and the
//!   split that keeps near-duplicates together ([`grouped`], groups found by `crate::dups`);
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
    grouped(dataset, spec, &[]).map(|g| g.split)
}

/// A split that keeps groups of near-duplicates together, and what keeping them together changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupedSplit {
    /// The split: every group lies entirely in one part.
    pub split: Split,
    /// The groups of 2 or more (indices into [`Dataset::samples`]), each kept on one side.
    pub groups: Vec<Vec<usize>>,
    /// The groups whose images are in more than one class: likely labelling errors. They are
    /// kept in training, never held out (a held-out image with a doubtful label measures nothing).
    pub cross_class: Vec<Vec<usize>>,
    /// Where a group made a class's held-out count differ from the rule's, for people.
    pub notes: Vec<String>,
}

impl GroupedSplit {
    /// Number of groups of 2 or more kept on one side of the split.
    pub fn kept_together(&self) -> usize {
        self.groups.len()
    }
}

/// Like [`stratified`], but every group of `groups` (near-duplicates: indices into
/// [`Dataset::samples`]; a sample in no group is a group of one) lands in one part.
///
/// Each class is split on its own as [`stratified`] does, with groups in place of images: its
/// groups, ordered by their first image's path, are shuffled by the class's stream and dealt test
/// first, then validation, then training. A part takes each group in turn that still fits its
/// count, so the count stays exact whenever the class's smaller groups allow; when they do not,
/// the nearest count is taken and a note says so. When every group is a single image, the result
/// is exactly [`stratified`]'s.
///
/// A group spanning classes goes to training. A class whose images form fewer distinct groups
/// than its parts need (e.g. one class that is a single group of copies) is not held out: it is
/// trained on, and a note names it, why, and the fix. When that leaves no class to validate on,
/// the split is refused, naming the classes and the fix.
pub fn grouped(dataset: &Dataset, spec: &SplitSpec, groups: &[Vec<usize>]) -> Result<GroupedSplit> {
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
    let units = Units::new(dataset, groups)?;

    let mut problems = Vec::new();
    // Classes whose near-duplicate groups are too few to hold any out: trained on only.
    let mut unsplit: Vec<(usize, String)> = Vec::new();
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
        let class_units = units.of_class(dataset, members);
        let need = 2 + usize::from(test > 0);
        if class_units.len() < need {
            let crossing = members.iter().filter(|&&i| units.crosses(i)).count();
            unsplit.push((c, if class_units.len() == 1 && crossing == 0 {
                format!(
                    "class `{name}`: all its {m} images are near-duplicates of one another (one group), \
                     so none can be held out without a copy of it in training"
                )
            } else if class_units.is_empty() {
                format!(
                    "class `{name}`: all its {m} images are near-duplicates of images in other classes \
                     (likely labelling errors, kept in training), so none can be held out"
                )
            } else {
                format!(
                    "class `{name}` has {m} images but only {} distinct ones once near-duplicates are \
                     counted once{}; holding out {} needs at least {need}",
                    class_units.len(),
                    if crossing > 0 {
                        format!(" ({crossing} more are copies of images in other classes)")
                    } else {
                        String::new()
                    },
                    if test > 0 { "test and validation images" } else { "validation images" }
                )
            }));
            continue;
        }
        plan.push((c, val, class_units));
    }
    let mut group_problems = Vec::new();
    if problems.is_empty() && plan.is_empty() && !unsplit.is_empty() {
        group_problems.extend(unsplit.iter().map(|(_, why)| why.clone()));
        group_problems.push("so no class is left to validate on".into());
    }
    if !problems.is_empty() || !group_problems.is_empty() {
        let mut hints = Vec::new();
        if !problems.is_empty() {
            hints.push(match spec.rule {
                SplitRule::ValPerClass { .. } => {
                    "add images to the classes named, lower --val-per-class, or use --val-fraction"
                }
                SplitRule::ValFraction { .. } => {
                    "add images to the classes named, or leave the class out"
                }
            });
        }
        if !group_problems.is_empty() {
            hints.push(
                "add distinct photos to the classes named (see `qcyn dups`), or pass --no-group to split \
                 anyway, knowing that held-out copies of training images make accuracy look better than it is",
            );
        }
        problems.extend(group_problems);
        return Err(Error::config(problems.join("; "), Some(hints.join("; "))));
    }

    let mut out = GroupedSplit {
        groups: units.groups.clone(),
        cross_class: units.cross_class(),
        ..GroupedSplit::default()
    };
    for (c, val, mut class_units) in plan {
        crate::shuffle::shuffle(
            &mut class_units,
            &mut crate::shuffle::class_rng(spec.seed, &dataset.classes[c]),
        );
        let name = &dataset.classes[c];
        for (part, quota, reserve, into) in [
            ("test", test, 2, &mut out.split.test),
            ("validation", val, 1, &mut out.split.val),
        ] {
            let got = deal(&mut class_units, quota, reserve, into);
            if got != quota {
                out.notes.push(format!(
                    "class `{name}`: {got} images held out for {part} instead of {quota}, to keep near-duplicates together"
                ));
            }
        }
        for u in class_units {
            out.split.train.extend(u);
        }
    }
    for (c, why) in unsplit {
        out.split
            .train
            .extend(by_class[c].iter().copied().filter(|&i| !units.crosses(i)));
        out.notes.push(format!(
            "{why}: trained on, none held out (its accuracy is not measured; add distinct photos of it, see `qcyn dups`)"
        ));
    }
    for g in &out.cross_class {
        out.split.train.extend_from_slice(g);
    }
    if !out.cross_class.is_empty() {
        out.notes.push(format!(
            "{} group(s) of near-duplicates span classes (likely labelling errors, see `qcyn dups`): kept in training, never held out",
            out.cross_class.len()
        ));
    }
    out.split.train.sort_unstable();
    out.split.val.sort_unstable();
    out.split.test.sort_unstable();
    Ok(out)
}

/// Moves groups from the front of `units` into `into` while they fit `quota` images, leaving at
/// least `reserve` groups for the later parts; when the fitting ones fall short, the smallest
/// remaining group is added too if that comes nearer to the quota (always, if nothing was taken).
/// Returns the number of images taken.
fn deal(units: &mut Vec<Vec<usize>>, quota: usize, reserve: usize, into: &mut Vec<usize>) -> usize {
    if quota == 0 {
        return 0;
    }
    let total = units.len();
    let (mut got, mut taken) = (0usize, 0usize);
    let mut rest = Vec::with_capacity(total);
    for u in units.drain(..) {
        if got + u.len() <= quota && total - taken > reserve {
            got += u.len();
            taken += 1;
            into.extend_from_slice(&u);
        } else {
            rest.push(u);
        }
    }
    if got < quota && total - taken > reserve {
        let k = (0..rest.len())
            .min_by_key(|&k| rest[k].len())
            .expect("more groups than the reserve");
        let over = got + rest[k].len() - quota;
        if got == 0 || over < quota - got {
            got += rest[k].len();
            into.extend(rest.remove(k));
        }
    }
    *units = rest;
    got
}

/// The groups of a grouped split, checked, with each sample's group.
struct Units {
    groups: Vec<Vec<usize>>,
    group_of: Vec<Option<usize>>,
    crosses: Vec<bool>,
}

impl Units {
    fn new(dataset: &Dataset, groups: &[Vec<usize>]) -> Result<Units> {
        let n = dataset.samples.len();
        let mut group_of = vec![None; n];
        let mut kept = Vec::new();
        for g in groups.iter().filter(|g| g.len() > 1) {
            let mut g = g.clone();
            g.sort_unstable();
            for &i in &g {
                let slot = group_of.get_mut(i).ok_or_else(|| {
                    Error::config(
                        format!("a near-duplicate group names sample {i} of {n}"),
                        None,
                    )
                })?;
                if slot.is_some() {
                    return Err(Error::config(
                        format!(
                            "{} is in two near-duplicate groups",
                            dataset.samples[i].path.display()
                        ),
                        None,
                    ));
                }
                *slot = Some(kept.len());
            }
            kept.push(g);
        }
        let crosses = kept
            .iter()
            .map(|g| {
                let c = dataset.samples[g[0]].class;
                g.iter().any(|&i| dataset.samples[i].class != c)
            })
            .collect();
        Ok(Units {
            groups: kept,
            group_of,
            crosses,
        })
    }

    fn crosses(&self, i: usize) -> bool {
        self.group_of[i].is_some_and(|g| self.crosses[g])
    }

    fn cross_class(&self) -> Vec<Vec<usize>> {
        self.groups
            .iter()
            .zip(&self.crosses)
            .filter(|(_, &x)| x)
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The class's groups (images in no group are groups of one), ordered by their first image's
    /// path; groups spanning classes are left out.
    fn of_class(&self, dataset: &Dataset, members: &[usize]) -> Vec<Vec<usize>> {
        let mut sorted = members.to_vec();
        sorted.sort_by(|&a, &b| dataset.samples[a].path.cmp(&dataset.samples[b].path));
        let mut seen = vec![false; self.groups.len()];
        let mut out = Vec::new();
        for i in sorted {
            match self.group_of[i] {
                None => out.push(vec![i]),
                Some(g) if self.crosses[g] => {}
                Some(g) => {
                    if !seen[g] {
                        seen[g] = true;
                        out.push(self.groups[g].clone());
                    }
                }
            }
        }
        out
    }
}

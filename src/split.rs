//! Split: a seeded, stratified split of a [`Dataset`]'s samples into train, validation and test
//! parts, made on paths before anything is decoded, and a [`SplitManifest`] that records it.
//!
//! Each class is split on its own: its samples are sorted by path, shuffled by a ChaCha8 stream
//! derived from the seed and the class *name*, and dealt out test first, then validation, then
//! training. So the same seed gives the same split on every machine, and adding images to one
//! class never changes how another class was split.
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::dataset::{Dataset, Sample};
use crate::error::{Error, Result};

/// Version of the [`SplitManifest`] JSON format; bumped on any incompatible change.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

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

/// One image of a [`SplitManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path relative to the dataset root, with `/` separators.
    pub path: String,
    /// Class name.
    pub class: String,
}

/// A split written down, so it can be reproduced and audited (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// [`MANIFEST_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// Seed of the shuffle (`None` when the split came from list files).
    pub seed: Option<u64>,
    /// Validation rule (`None` when the split came from list files).
    pub rule: Option<SplitRule>,
    /// Test images per class, if any were held out.
    #[serde(default)]
    pub test_per_class: Option<usize>,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Training images.
    pub train: Vec<ManifestEntry>,
    /// Validation images.
    pub val: Vec<ManifestEntry>,
    /// Test images.
    #[serde(default)]
    pub test: Vec<ManifestEntry>,
}

/// A manifest matched against a scanned dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The recorded split, as indices into the dataset's samples.
    pub split: Split,
    /// Samples of the dataset that the manifest does not list (images added since); they are in no
    /// part.
    pub unlisted: Vec<usize>,
}

impl SplitManifest {
    /// Records `split` of `dataset`; `spec` is `None` when the split did not come from a rule (list
    /// files).
    pub fn new(
        dataset: &Dataset,
        split: &Split,
        spec: Option<&SplitSpec>,
    ) -> Result<SplitManifest> {
        let entries = |part: &[usize]| -> Result<Vec<ManifestEntry>> {
            part.iter()
                .map(|&i| {
                    let s = dataset.sample(i)?;
                    Ok(ManifestEntry {
                        path: relative_path(&dataset.root, &s.path)?,
                        class: dataset.classes[s.class].clone(),
                    })
                })
                .collect()
        };
        Ok(SplitManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            seed: spec.map(|s| s.seed),
            rule: spec.map(|s| s.rule),
            test_per_class: spec.and_then(|s| s.test_per_class),
            classes: dataset.classes.clone(),
            train: entries(&split.train)?,
            val: entries(&split.val)?,
            test: entries(&split.test)?,
        })
    }

    /// Writes the manifest as pretty JSON, atomically (a temporary file in the same folder, then
    /// renamed over `path`).
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(self).expect("a manifest always serialises");
        json.push(b'\n');
        write_atomic(path, &json)
    }

    /// Reads and checks a manifest written by [`SplitManifest::write`].
    pub fn read(path: &Path) -> Result<SplitManifest> {
        let text =
            std::fs::read(path).map_err(|e| Error::io("cannot read split manifest", path, e))?;
        let hint = Some("re-create it with `qcyn split`".to_string());
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            Error::bad_file(
                path,
                format!("split manifest is damaged or truncated: {e}"),
                hint.clone(),
            )
        })?;
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if version != Some(MANIFEST_FORMAT_VERSION as u64) {
            return Err(Error::bad_file(
                path,
                format!(
                    "split manifest format version {} is not the one this qcyn reads ({MANIFEST_FORMAT_VERSION})",
                    version.map_or("(missing)".to_string(), |v| v.to_string())
                ),
                hint,
            ));
        }
        let m: SplitManifest = serde_json::from_value(value).map_err(|e| {
            Error::bad_file(path, format!("invalid split manifest: {e}"), hint.clone())
        })?;
        let mut seen = std::collections::HashSet::new();
        for (part, entries) in m.named_parts() {
            for e in entries {
                if !m.classes.contains(&e.class) {
                    return Err(Error::bad_file(
                        path,
                        format!(
                            "`{}` in {part} has class `{}`, which is not in `classes`",
                            e.path, e.class
                        ),
                        hint,
                    ));
                }
                check_relative(&e.path).map_err(|msg| {
                    Error::bad_file(path, format!("`{}`: {msg}", e.path), hint.clone())
                })?;
                if !seen.insert(e.path.as_str()) {
                    return Err(Error::bad_file(
                        path,
                        format!("`{}` is listed twice", e.path),
                        hint,
                    ));
                }
            }
        }
        Ok(m)
    }

    fn named_parts(&self) -> [(&'static str, &[ManifestEntry]); 3] {
        [
            ("train", &self.train),
            ("val", &self.val),
            ("test", &self.test),
        ]
    }

    /// Matches the manifest against a scanned dataset (by relative path).
    ///
    /// Errors when the class names differ, when a listed image is no longer in the dataset, or when
    /// an image changed class. Images added since are returned in [`Resolved::unlisted`].
    pub fn resolve(&self, dataset: &Dataset) -> Result<Resolved> {
        if self.classes != dataset.classes {
            return Err(Error::config(
                format!(
                    "the split manifest's classes ({}) differ from the dataset's ({})",
                    self.classes.join(", "),
                    dataset.classes.join(", ")
                ),
                Some("re-run `qcyn split` on this dataset".into()),
            ));
        }
        let mut index = std::collections::HashMap::with_capacity(dataset.samples.len());
        for (i, s) in dataset.samples.iter().enumerate() {
            index.insert(relative_path(&dataset.root, &s.path)?, i);
        }
        let mut split = Split::default();
        let mut missing = Vec::new();
        let mut listed = vec![false; dataset.samples.len()];
        for ((_, entries), out) in
            self.named_parts()
                .into_iter()
                .zip([&mut split.train, &mut split.val, &mut split.test])
        {
            for e in entries {
                match index.get(&e.path) {
                    Some(&i) => {
                        let class = &dataset.classes[dataset.samples[i].class];
                        if *class != e.class {
                            return Err(Error::config(
                                format!("`{}` was class `{}` in the split manifest but is now `{class}`", e.path, e.class),
                                Some("re-run `qcyn split` on this dataset".into()),
                            ));
                        }
                        listed[i] = true;
                        out.push(i);
                    }
                    None => missing.push(e.path.as_str()),
                }
            }
            out.sort_unstable();
        }
        if !missing.is_empty() {
            return Err(Error::config(
                format!(
                    "{} image(s) of the split manifest are not in the dataset at {}: {}",
                    missing.len(),
                    dataset.root.display(),
                    preview(&missing, 5)
                ),
                Some("restore them, or re-run `qcyn split` to make a new split".into()),
            ));
        }
        let unlisted = (0..dataset.samples.len()).filter(|&i| !listed[i]).collect();
        Ok(Resolved { split, unlisted })
    }

    /// Builds the dataset the manifest describes, rooted at `root`, without scanning (the files
    /// are not checked), with samples in class, then path order.
    pub fn to_dataset(&self, root: &Path) -> (Dataset, Split) {
        let mut rows: Vec<(usize, PathBuf, usize)> = Vec::new();
        for (p, (_, entries)) in self.named_parts().iter().enumerate() {
            for e in *entries {
                let class = self.classes.iter().position(|c| *c == e.class).unwrap_or(0);
                rows.push((class, root.join(&e.path), p));
            }
        }
        rows.sort();
        let mut split = Split::default();
        let mut samples = Vec::with_capacity(rows.len());
        for (i, (class, path, p)) in rows.into_iter().enumerate() {
            samples.push(Sample { path, class });
            [&mut split.train, &mut split.val, &mut split.test][p].push(i);
        }
        let dataset = Dataset {
            root: root.to_path_buf(),
            classes: self.classes.clone(),
            samples,
            skipped: Vec::new(),
        };
        (dataset, split)
    }
}

/// `path` relative to `root`, with `/` separators. `path` may already be relative.
pub fn relative_path(root: &Path, path: &Path) -> Result<String> {
    let rel = if path.is_absolute() || path.starts_with(root) {
        path.strip_prefix(root).map_err(|_| {
            Error::config(
                format!(
                    "{} is not inside the dataset folder {}",
                    path.display(),
                    root.display()
                ),
                None,
            )
        })?
    } else {
        path
    };
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| {
                Error::config(
                    format!("{} is not valid UTF-8; rename it", path.display()),
                    None,
                )
            })?),
            Component::CurDir => {}
            _ => {
                return Err(Error::config(
                    format!(
                        "{} is not inside the dataset folder {}",
                        path.display(),
                        root.display()
                    ),
                    None,
                ))
            }
        }
    }
    Ok(parts.join("/"))
}

/// Checks that a `/`-separated path stays inside its base: relative, no `..`. Returns why not.
pub(crate) fn check_relative(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    let p = Path::new(path);
    if path.starts_with('/') || path.starts_with('\\') || p.is_absolute() || p.has_root() {
        return Err("absolute paths are not allowed; give it relative to the base folder".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => return Err("path escapes the base folder (`..` or a drive prefix)".into()),
        }
    }
    if path.split(['/', '\\']).any(|part| part == "..") {
        return Err("path escapes the base folder (`..`)".into());
    }
    Ok(())
}

/// The first `n` items joined by ", ", with "…" when there are more.
pub(crate) fn preview<T: AsRef<str>>(items: &[T], n: usize) -> String {
    let mut s = items
        .iter()
        .take(n)
        .map(|x| x.as_ref())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > n {
        s.push_str(", …");
    }
    s
}

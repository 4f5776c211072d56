//! The split written down: a [`SplitManifest`] (JSON) records which image is in which part, so a
//! split can be reproduced and audited, and is matched back against a scanned dataset by relative
//! path.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::dataset::{check_relative, relative_path, Dataset, Sample};
use crate::error::{preview, Error, Result};
use crate::split::{Split, SplitRule, SplitSpec};

/// Version of the [`SplitManifest`] JSON format; bumped on any incompatible change.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

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
    /// The near-duplicate groups (of 2 or more, relative paths) the split kept together; `None`
    /// when it was made without grouping (`--no-group`, list files, or a manifest written before
    /// grouping existed: this field is optional, so the format version stays 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Vec<String>>>,
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
            groups: None,
        })
    }

    /// Records the near-duplicate groups (indices into `dataset`'s samples) the split kept
    /// together.
    pub fn with_groups(mut self, dataset: &Dataset, groups: &[Vec<usize>]) -> Result<Self> {
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let paths = g
                .iter()
                .map(|&i| relative_path(&dataset.root, &dataset.sample(i)?.path))
                .collect::<Result<Vec<_>>>()?;
            out.push(paths);
        }
        self.groups = Some(out);
        Ok(self)
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

    /// The recorded groups as indices into `dataset`'s samples (paths no longer in the dataset are
    /// left out); `None` when the split was made without grouping.
    pub fn group_indices(&self, dataset: &Dataset) -> Option<Vec<Vec<usize>>> {
        let groups = self.groups.as_ref()?;
        let index: std::collections::HashMap<String, usize> = dataset
            .samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((relative_path(&dataset.root, &s.path).ok()?, i)))
            .collect();
        Some(
            groups
                .iter()
                .map(|g| g.iter().filter_map(|p| index.get(p).copied()).collect())
                .collect(),
        )
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

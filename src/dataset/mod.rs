//! Scan: turn a folder-per-class tree into labelled samples, in a deterministic order, before
//! anything is decoded (the tutorial's list files are read by `split::lists`). Also the path rules
//! every later step shares: relative paths inside a dataset, and what counts as an image file.
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File extensions qcyn reads as images (lower case).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"];

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// Index into [`Dataset::classes`].
    pub class: usize,
}

/// A file that was passed over, and why.
///
/// In JSON: `path` (lossy when the name is not UTF-8), `reason`, and, only for a name that is not
/// UTF-8, `path_escaped` ([`escape_path`]: its exact bytes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Skipped {
    /// The file (written lossily when its name is not UTF-8).
    pub path: PathBuf,
    /// Why it was skipped, for people.
    pub reason: String,
}

impl Serialize for Skipped {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let escaped = escaped_if_not_utf8(&self.path);
        let mut st = s.serialize_struct("Skipped", 2 + usize::from(escaped.is_some()))?;
        st.serialize_field("path", &self.path.to_string_lossy())?;
        st.serialize_field("reason", &self.reason)?;
        if let Some(e) = escaped {
            st.serialize_field("path_escaped", &e)?;
        }
        st.end()
    }
}

/// Serialises a path as text, replacing bytes that are not UTF-8 (JSON cannot hold them; see
/// [`escape_path`] for the exact form).
pub fn lossy_path<S: serde::Serializer>(path: &Path, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// A path as text that keeps every byte: a UTF-8 path unchanged; in any other (Linux names are
/// bytes, e.g. Latin-1 names from another system's zip) each byte that is not part of valid UTF-8,
/// and each `%`, written `%XX` (hex), as in URLs. [`unescape_path`] reverses it.
pub fn escape_path(path: &Path) -> String {
    escaped_if_not_utf8(path).unwrap_or_else(|| path.to_string_lossy().into_owned())
}

/// [`escape_path`] for a path that is not UTF-8, `None` for one that is.
pub fn escaped_if_not_utf8(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    if path.to_str().is_some() {
        return None;
    }
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// The path [`escape_path`] wrote, or `None` when `text` holds no valid `%XX`.
pub fn unescape_path(text: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut any = false;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
                any = true;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    any.then(|| PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// Labelled images with their class names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dataset {
    /// Where the paths are relative to (the scanned folder or the list files' base).
    pub root: PathBuf,
    /// Class names, indexed by [`Sample::class`].
    pub classes: Vec<String>,
    /// Samples in deterministic order (class, then file name).
    pub samples: Vec<Sample>,
    /// Files seen but not usable (not an image, unreadable name, …).
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Sample `i`, or an error when a split names an index the dataset does not have.
    pub fn sample(&self, i: usize) -> Result<&Sample> {
        self.samples.get(i).ok_or_else(|| {
            Error::config(
                format!(
                    "split index {i} is out of range for {} samples",
                    self.samples.len()
                ),
                None,
            )
        })
    }

    /// Number of samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.class] += 1;
        }
        counts
    }
}

/// Whether a path has an image extension qcyn reads.
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Scans `root/<class>/<image>`: class names are folder names, sorted; images are sorted by name.
///
/// Files without an image extension and hidden files are listed in [`Dataset::skipped`]; an empty
/// class folder is an error naming it, and so is a tree with no images at all.
pub fn scan(root: &Path) -> Result<Dataset> {
    let meta = std::fs::metadata(root).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::bad_file(
                root,
                "dataset folder not found",
                Some("check the path: qcyn expects a folder with one sub-folder per class (root/<class>/<image>)".into()),
            )
        } else {
            Error::io("cannot open dataset folder", root, e)
        }
    })?;
    if !meta.is_dir() {
        return Err(Error::bad_file(
            root,
            "is not a folder",
            Some("pass a folder with one sub-folder per class (root/<class>/<image>), or --lists DIR".into()),
        ));
    }
    let mut class_dirs = Vec::new();
    let mut skipped = Vec::new();
    for entry in read_dir_sorted(root)? {
        let name = entry.file_name().unwrap_or_default();
        let Some(name_str) = name.to_str() else {
            skipped.push(Skipped {
                path: entry.clone(),
                reason: "folder name is not valid UTF-8; rename it".into(),
            });
            continue;
        };
        if name_str.starts_with('.') {
            continue;
        }
        if entry.is_dir() {
            class_dirs.push((name_str.to_string(), entry));
        } else if has_image_extension(&entry) {
            skipped.push(Skipped {
                path: entry.clone(),
                reason: "image directly in the dataset folder has no class; move it into a class sub-folder".into(),
            });
        }
    }
    refuse_split_layout(root, &class_dirs)?;
    let mut dataset = Dataset {
        root: root.to_path_buf(),
        ..Default::default()
    };
    for (class, dir) in class_dirs {
        let mut count = 0;
        let (files, loops) = walk_files(&dir)?;
        skipped.extend(loops);
        // A file name need not be UTF-8 (Linux names are bytes): it is read like any other, keyed
        // by content, shown lossily and written exactly with `escape_path`.
        for path in files {
            if !has_image_extension(&path) {
                skipped.push(Skipped {
                    path,
                    reason: format!(
                        "not an image file (extensions read: {})",
                        IMAGE_EXTENSIONS.join(", ")
                    ),
                });
                continue;
            }
            dataset.samples.push(Sample {
                path,
                class: dataset.classes.len(),
            });
            count += 1;
        }
        if count == 0 {
            skipped.push(Skipped {
                path: dir.clone(),
                reason: "class folder holds no images; the class is left out".into(),
            });
            continue;
        }
        dataset.classes.push(class);
    }
    dataset.skipped = skipped;
    if dataset.samples.is_empty() {
        return Err(Error::bad_file(
            root,
            "found no images in its sub-folders",
            Some(format!(
                "qcyn expects root/<class>/<image> with extensions {}",
                IMAGE_EXTENSIONS.join(", ")
            )),
        ));
    }
    Ok(dataset)
}

/// A folder of images without class sub-folders (as `bench --images` takes): one class, `images`,
/// with the folder's image files in name order.
pub fn flat(dir: &Path) -> Result<Dataset> {
    let samples: Vec<Sample> = read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_file() && has_image_extension(p))
        .map(|path| Sample { path, class: 0 })
        .collect();
    if samples.is_empty() {
        return Err(Error::bad_file(
            dir,
            "holds no images",
            Some(format!(
                "pass a folder of images (extensions {})",
                IMAGE_EXTENSIONS.join(", ")
            )),
        ));
    }
    Ok(Dataset {
        root: dir.to_path_buf(),
        classes: vec!["images".into()],
        samples,
        skipped: Vec::new(),
    })
}

/// Files under `dir`, recursively, sorted by path (walked by `walkdir`, following symbolic
/// links). Hidden files and folders (names starting with `.`) are passed over; a symbolic link to
/// a folder above it, or to a folder already walked through another path, is reported in the
/// second list instead of being followed again. A link that points nowhere is returned as a file,
/// so that reading it reports the problem with its name.
pub fn walk_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let mut out = Vec::new();
    let mut loops = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut twice = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() > 0 && e.file_name().to_string_lossy().starts_with('.') {
                return false;
            }
            if e.file_type().is_dir() {
                let real = std::fs::canonicalize(e.path()).unwrap_or_else(|_| e.path().into());
                if !seen.insert(real) {
                    twice.push(Skipped {
                        path: e.path().to_path_buf(),
                        reason: "folder was already read through another path (a symbolic-link loop); not read twice".into(),
                    });
                    return false;
                }
            }
            true
        });
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => out.push(e.into_path()),
            Err(err) if err.loop_ancestor().is_some() => loops.push(Skipped {
                path: err.path().unwrap_or(dir).to_path_buf(),
                reason: "links to a folder above it (a symbolic-link loop); not followed".into(),
            }),
            Err(err) => {
                let path = err.path().unwrap_or(dir).to_path_buf();
                let dangling = err.depth() > 0
                    && std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
                if dangling {
                    out.push(path);
                } else {
                    let io = err
                        .into_io_error()
                        .unwrap_or_else(|| std::io::Error::other("cannot walk the folder"));
                    return Err(Error::io("cannot read folder", path, io));
                }
            }
        }
    }
    loops.extend(twice);
    out.sort();
    Ok((out, loops))
}

/// Errors when `root` looks like `root/train/<class>/…` + `root/val/<class>/…`: every top-level
/// folder holds no image of its own but the same sub-folders. Taking `train` and `val` as the
/// classes would train on the split, not on the categories.
fn refuse_split_layout(root: &Path, class_dirs: &[(String, PathBuf)]) -> Result<()> {
    if class_dirs.len() < 2 {
        return Ok(());
    }
    let mut common: Option<std::collections::BTreeSet<String>> = None;
    for (_, dir) in class_dirs {
        let entries = read_dir_sorted(dir)?;
        if entries
            .iter()
            .any(|p| p.is_file() && has_image_extension(p))
        {
            return Ok(());
        }
        let subs: std::collections::BTreeSet<String> = entries
            .iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .filter(|n| !n.starts_with('.'))
            .collect();
        common = Some(match common {
            None => subs,
            Some(c) => c.intersection(&subs).cloned().collect(),
        });
    }
    let common = common.unwrap_or_default();
    if common.len() < 2 {
        return Ok(());
    }
    let tops: Vec<&str> = class_dirs.iter().map(|(c, _)| c.as_str()).collect();
    let subs: Vec<&str> = common.iter().map(String::as_str).collect();
    Err(Error::bad_file(
        root,
        format!(
            "looks like a split, not classes: every folder ({}) holds the same sub-folders ({}) and no images of its own",
            tops.join(", "),
            subs.join(", ")
        ),
        Some(format!(
            "point qcyn at one part, e.g. {}, and score the other with `qcyn eval`; or describe the split with list files (--lists)",
            root.join(tops[0]).display()
        )),
    ))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))? {
        out.push(
            entry
                .map_err(|e| Error::io("cannot read folder", dir, e))?
                .path(),
        );
    }
    out.sort();
    Ok(out)
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
            // A name that is not UTF-8 is written escaped (`%XX`), which list readers undo.
            Component::Normal(s) => parts.push(escape_path(Path::new(s))),
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

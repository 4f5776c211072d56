//! The tutorial's PaddleHub list files: `train_list.txt`, `validate_list.txt`, `test_list.txt`
//! (`relative/path label_index` per line) and `label_list.txt` (one class name per line).
//!
//! Reading gives a [`Dataset`] and the [`Split`] the lists describe; writing records a split in the
//! same four files, line for line as the tutorial's `write_list()` did. Paths are relative to a base
//! folder, the list folder unless told otherwise. The label is the *last* whitespace-separated token
//! of a line, so paths may contain spaces.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::dataset::{check_relative, relative_path, Dataset, Sample};
use crate::error::{preview, Error, Result};
use crate::split::Split;

/// Training list file name.
pub const TRAIN_LIST: &str = "train_list.txt";
/// Validation list file name.
pub const VALIDATE_LIST: &str = "validate_list.txt";
/// Test list file name.
pub const TEST_LIST: &str = "test_list.txt";
/// Class names file name.
pub const LABEL_LIST: &str = "label_list.txt";

/// A dataset read from list files, with the split they describe.
#[derive(Debug, Clone)]
pub struct Lists {
    /// Samples of all three lists, in class then path order; [`Dataset::root`] is the base folder.
    pub dataset: Dataset,
    /// Which samples each list named.
    pub split: Split,
}

/// Reads the four list files in `dir`; paths in them are relative to `base` (default: `dir`).
///
/// `train_list.txt` and `label_list.txt` are required; a missing `validate_list.txt` or
/// `test_list.txt` is an empty part. Labels may be an index into `label_list.txt` or a class name
/// from it. Every problem names the list file and line; images missing on disk are collected and
/// reported together.
pub fn read(dir: &Path, base: Option<&Path>) -> Result<Lists> {
    let base = base.unwrap_or(dir).to_path_buf();
    let classes = read_labels(&dir.join(LABEL_LIST))?;
    let by_name: HashMap<&str, usize> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i))
        .collect();

    // (part, relative path, class)
    let mut rows: Vec<(usize, String, usize)> = Vec::new();
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    for (part, name) in [TRAIN_LIST, VALIDATE_LIST, TEST_LIST]
        .into_iter()
        .enumerate()
    {
        let file = dir.join(name);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && part > 0 => continue,
            Err(e) => return Err(Error::io("cannot read list file", &file, e)),
        };
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let at = |msg: String, hint: Option<String>| {
                Error::bad_file(&file, format!("line {line_no}: {msg}"), hint)
            };
            let line = raw.trim_end();
            if line.trim_start().is_empty() {
                continue;
            }
            let Some(cut) = line.rfind(char::is_whitespace) else {
                return Err(at(
                    format!("expected `relative/path label`, found `{line}`"),
                    Some("each line is an image path, a space, and its label index from label_list.txt".into()),
                ));
            };
            let path = line[..cut].trim();
            let label = &line[cut + 1..];
            if path.is_empty() {
                return Err(at(
                    format!("expected `relative/path label`, found `{line}`"),
                    None,
                ));
            }
            let class = match label.parse::<i64>() {
                Ok(i) if i >= 0 && (i as u64) < classes.len() as u64 => i as usize,
                Ok(i) => {
                    return Err(at(
                        format!(
                            "label {i} is out of range: {LABEL_LIST} has {} classes (labels 0 to {})",
                            classes.len(),
                            classes.len() - 1
                        ),
                        Some(format!("add the class to {LABEL_LIST}, or fix the label")),
                    ))
                }
                Err(_) => match by_name.get(label) {
                    Some(&c) => c,
                    None => {
                        return Err(at(
                            format!("unknown class `{label}`: the label is neither an index nor a name in {LABEL_LIST}"),
                            Some(format!("classes are: {}", preview(&classes, 10))),
                        ))
                    }
                },
            };
            check_relative(path).map_err(|msg| {
                at(
                    format!("`{path}`: {msg}"),
                    Some("list paths must stay inside the base folder: move the images under it, or point --base at a folder that holds them all".into()),
                )
            })?;
            let rel = normalise(path);
            if let Some((f, l)) = seen.get(&rel) {
                return Err(at(
                    format!("`{rel}` is listed twice: first at {f} line {l}"),
                    Some("an image belongs in one list, once".into()),
                ));
            }
            seen.insert(rel.clone(), (name.to_string(), line_no));
            // A name that is not UTF-8 was written escaped (`dataset::escape_path`).
            let found = base.join(&rel).is_file()
                || crate::dataset::unescape_path(&rel).is_some_and(|p| base.join(p).is_file());
            if !found {
                missing.push(format!("{rel} ({name} line {line_no})"));
            }
            rows.push((part, rel, class));
        }
    }
    if !missing.is_empty() {
        return Err(Error::bad_file(
            &base,
            format!("{} listed image(s) are missing: {}", missing.len(), preview(&missing, 5)),
            Some("paths in the list files are relative to the base folder (the list folder unless --base is given)".into()),
        ));
    }
    if rows.is_empty() {
        return Err(Error::bad_file(
            dir.join(TRAIN_LIST),
            "lists no images",
            None,
        ));
    }

    let mut ordered: Vec<(usize, PathBuf, usize)> = rows
        .into_iter()
        .map(|(part, rel, class)| {
            let path = match crate::dataset::unescape_path(&rel) {
                Some(p) if !base.join(&rel).is_file() => base.join(p),
                _ => base.join(rel),
            };
            (class, path, part)
        })
        .collect();
    ordered.sort();
    let mut split = Split::default();
    let mut samples = Vec::with_capacity(ordered.len());
    for (i, (class, path, part)) in ordered.into_iter().enumerate() {
        samples.push(Sample { path, class });
        [&mut split.train, &mut split.val, &mut split.test][part].push(i);
    }
    Ok(Lists {
        dataset: Dataset {
            root: base,
            classes,
            samples,
            skipped: Vec::new(),
        },
        split,
    })
}

fn read_labels(file: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Error::io("cannot read label list", file, e))?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    let mut classes: Vec<String> = Vec::with_capacity(end);
    for (n, name) in lines[..end].iter().enumerate() {
        if name.is_empty() {
            return Err(Error::bad_file(
                file,
                format!("line {}: empty class name (labels are line numbers from 0, so blank lines would shift them)", n + 1),
                None,
            ));
        }
        if let Some(first) = classes.iter().position(|c| c == name) {
            return Err(Error::bad_file(
                file,
                format!(
                    "line {}: class `{name}` is already named on line {}",
                    n + 1,
                    first + 1
                ),
                None,
            ));
        }
        classes.push(name.to_string());
    }
    if classes.is_empty() {
        return Err(Error::bad_file(
            file,
            "names no classes",
            Some("write one class name per line".into()),
        ));
    }
    Ok(classes)
}

/// `a/./b` → `a/b`, `\` → `/` (after [`check_relative`] accepted it).
fn normalise(path: &str) -> String {
    path.split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes `split` of `dataset` as the four list files in `dir`, paths relative to
/// [`Dataset::root`], one `path label` line per image with `\n` endings, in the split's order.
/// `test_list.txt` is written even when empty. Each file is written atomically.
///
/// Read them back with [`read`] and `base` = the dataset root (the default when `dir` is the root).
pub fn write(dir: &Path, dataset: &Dataset, split: &Split) -> Result<()> {
    for (i, name) in dataset.classes.iter().enumerate() {
        if name.is_empty() || name.contains(['\n', '\r']) || name.trim() != name {
            return Err(Error::config(
                format!("class {i} `{name}` cannot be written to {LABEL_LIST}: empty, multi-line or padded with spaces"),
                Some("rename the class folder".into()),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
    for (name, part) in [
        (TRAIN_LIST, &split.train),
        (VALIDATE_LIST, &split.val),
        (TEST_LIST, &split.test),
    ] {
        let mut text = String::new();
        for &i in part.iter() {
            let s = dataset.sample(i)?;
            let rel = relative_path(&dataset.root, &s.path)?;
            if rel.contains(['\n', '\r']) || rel.trim() != rel {
                return Err(Error::config(
                    format!("{} cannot be written to a list file (line break, or space at the start or end of its name)", s.path.display()),
                    Some("rename the file".into()),
                ));
            }
            text.push_str(&rel);
            text.push(' ');
            text.push_str(&s.class.to_string());
            text.push('\n');
        }
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    let mut labels = dataset.classes.join("\n");
    labels.push('\n');
    write_atomic(&dir.join(LABEL_LIST), labels.as_bytes())
}

//! The command-line workflow: `split` and its list files, `fit` and its bundle, `eval`, `predict`,
//! and the clear errors on bad lists and bundles, on the tiny fixture model (whose 4-D features are
//! the channel means and the maximum, so images of clearly different colours are separable); then
//! face mode with the real `face` model on real photos.
use std::path::{Path, PathBuf};

use image::{imageops, Rgb, RgbImage};
use serde_json::Value;

use crate::util::*;

// ---------------------------------------------------------------------------------- helpers

const RED: [u8; 3] = [215, 35, 30];
const GREEN: [u8; 3] = [30, 200, 45];
const BLUE: [u8; 3] = [40, 45, 210];

/// An image of colour `c`, varied by `i` (size and a faint texture) so that every file, and so its
/// cache entry, is different.
fn tinted(c: [u8; 3], i: u32) -> RgbImage {
    let mut img = RgbImage::from_fn(16 + i % 5, 12 + i % 3, |x, y| {
        let d = ((x * 3 + y * 5 + i * 7) % 21) as i32 - 10;
        Rgb(c.map(|v| (v as i32 + d).clamp(0, 255) as u8))
    });
    // One corner pixel carries `i`, so no two images of a class share their content.
    let corner = img.get_pixel_mut(0, 0);
    corner.0[0] = (i % 251) as u8;
    corner.0[1] = (i / 251) as u8;
    img
}

/// A folder-per-class dataset under `rel`: `n` PNGs of colour `c` per class `name`; `offset`
/// varies the images, so that two datasets with different offsets share no image.
fn colours(dir: &Dir, rel: &str, classes: &[(&str, [u8; 3], u32)], offset: u32) -> PathBuf {
    for &(name, c, n) in classes {
        for i in 0..n {
            dir.write(
                &format!("{rel}/{name}/{i:03}.png"),
                &png(&tinted(c, offset + i)),
            );
        }
    }
    dir.path(rel)
}

/// The fixture models folder, passed as `--models-dir` so that bundles find `tiny` by name.
fn fixtures() -> String {
    project()
        .join("tests/fixtures/models")
        .display()
        .to_string()
}

/// `args` with `--models-dir <fixtures>` in front (a global option); `split`, which reads
/// features to group near-duplicates, gets `--model tiny` unless it names a model.
fn with_models<'a>(models: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--models-dir", models];
    all.extend_from_slice(args);
    if args.first() == Some(&"split") && !args.contains(&"--model") {
        all.extend_from_slice(&["--model", "tiny"]);
    }
    all
}

/// `qcyn --models-dir <fixtures> args… --json`: (json, exit code, stderr), never a panic.
fn q(dir: &Dir, args: &[&str]) -> (Value, i32, String) {
    let models = fixtures();
    let (json, code, err) = dir.json(&with_models(&models, args));
    assert!(!err.contains("panicked"), "{err}");
    (json, code, err)
}

/// Like [`q`], and the command must succeed.
fn ok(dir: &Dir, args: &[&str]) -> Value {
    let (json, code, err) = q(dir, args);
    assert_eq!(code, 0, "qcyn {args:?} failed: {err}\n{json}");
    json
}

/// Runs `qcyn --models-dir <fixtures> args…`, which must fail with exit code 1, a message on
/// stderr and no panic; returns stderr.
fn fails(dir: &Dir, args: &[&str]) -> String {
    let models = fixtures();
    let out = dir.run(&with_models(&models, args));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "qcyn {args:?} should fail with exit code 1; stdout: {}\nstderr: {err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// `fit DATA… --model tiny --out OUT` with extra options, returning the fit report.
fn fit(dir: &Dir, data: &[&str], out: &str, extra: &[&str]) -> Value {
    let mut args = vec!["fit"];
    args.extend_from_slice(data);
    args.extend_from_slice(&["--model", "tiny", "--out", out, "--threads", "1"]);
    args.extend_from_slice(extra);
    ok(dir, &args)
}

/// Lines of a list file as (relative path, label index).
fn list(file: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines()
        .map(|l| {
            let (p, label) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("`{l}` in {}", file.display()));
            (p.to_string(), label.parse().expect("label index"))
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Sum of a JSON `{class: probability}` map.
fn total(probs: &Value) -> f64 {
    probs
        .as_object()
        .unwrap_or_else(|| panic!("not a map: {probs}"))
        .values()
        .map(|p| p.as_f64().unwrap())
        .sum()
}

/// The entry of a `predict --json` list whose path ends with `name`.
fn entry<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .unwrap_or_else(|| panic!("no entry for {name}: {list}"))
}

/// Row sums of a confusion matrix.
fn row_sums(confusion: &Value) -> Vec<u64> {
    confusion
        .as_array()
        .unwrap_or_else(|| panic!("not a matrix: {confusion}"))
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .sum()
        })
        .collect()
}

/// Whether the diagonal holds everything.
fn diagonal(confusion: &Value) -> bool {
    confusion
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .all(|(i, r)| {
            r.as_array()
                .unwrap()
                .iter()
                .enumerate()
                .all(|(j, v)| i == j || v.as_u64() == Some(0))
        })
}

// ---------------------------------------------------------------------------------- split

#[test]
fn split_writes_the_tutorials_list_files_reproducibly() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 10), ("green", GREEN, 7)], 0);
    let split = |seed: &str, lists: &str| {
        ok(
            &dir,
            &[
                "split",
                "data",
                "--val-per-class",
                "2",
                "--seed",
                seed,
                "--write-lists",
                lists,
                "--out",
                &format!("{lists}.json"),
            ],
        )
    };
    let json = split("7", "lists");
    assert_eq!(strings(&json["classes"]), ["green", "red"], "{json}");
    assert_eq!(
        (&json["n_train"], &json["n_val"], &json["n_test"]),
        (&Value::from(13), &Value::from(4), &Value::from(0)),
        "{json}"
    );
    let per_class = json["per_class"].as_array().unwrap();
    for (row, (class, train)) in per_class.iter().zip([("green", 5), ("red", 8)]) {
        assert_eq!(row["class"], class, "{json}");
        assert_eq!(
            (&row["train"], &row["val"], &row["test"]),
            (&Value::from(train), &Value::from(2), &Value::from(0)),
            "{json}"
        );
    }
    assert!(dir.path("lists.json").is_file(), "the manifest is written");

    let lists = dir.path("lists");
    assert_eq!(
        std::fs::read_to_string(lists.join("label_list.txt")).unwrap(),
        "green\nred\n"
    );
    let (train, val, test) = (
        list(&lists.join("train_list.txt")),
        list(&lists.join("validate_list.txt")),
        list(&lists.join("test_list.txt")),
    );
    assert_eq!((train.len(), val.len(), test.len()), (13, 4, 0));
    let mut all: Vec<&String> = Vec::new();
    for (path, label) in train.iter().chain(&val) {
        assert!(
            dir.path("data").join(path).is_file(),
            "`{path}` is relative to the dataset folder"
        );
        let class = ["green", "red"][*label];
        assert!(path.starts_with(&format!("{class}/")), "{path} {label}");
        all.push(path);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 17, "every image once, in one list");
    for class in [0, 1] {
        assert_eq!(val.iter().filter(|(_, l)| *l == class).count(), 2);
    }

    split("7", "again");
    split("8", "other");
    let read = |d: &str, f: &str| std::fs::read(dir.path(d).join(f)).unwrap();
    for f in [
        "train_list.txt",
        "validate_list.txt",
        "test_list.txt",
        "label_list.txt",
    ] {
        assert_eq!(read("lists", f), read("again", f), "same seed, same {f}");
    }
    assert_ne!(
        read("lists", "validate_list.txt"),
        read("other", "validate_list.txt"),
        "another seed, another split"
    );
}

#[test]
fn split_by_fraction_with_a_test_part_is_stratified() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 10), ("green", GREEN, 5)], 0);
    let json = ok(
        &dir,
        &[
            "split",
            "data",
            "--val-fraction",
            "0.2",
            "--test-per-class",
            "1",
            "--seed",
            "1",
            "--write-lists",
            "lists",
        ],
    );
    // red: 0.2 × 10 = 2 validated, 1 tested, 7 trained; green: 0.2 × 5 = 1, 1, 3.
    let rows: Vec<(String, u64, u64, u64)> = json["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["class"].as_str().unwrap().to_string(),
                r["train"].as_u64().unwrap(),
                r["val"].as_u64().unwrap(),
                r["test"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [("green".into(), 3, 1, 1), ("red".into(), 7, 2, 1)],
        "{json}"
    );
    let test = list(&dir.path("lists/test_list.txt"));
    let mut labels: Vec<usize> = test.iter().map(|(_, l)| *l).collect();
    labels.sort();
    assert_eq!(labels, [0, 1], "one test image per class");
    assert!(dir.path("split.json").is_file(), "default manifest path");
}

#[test]
fn split_refuses_classes_too_small_naming_them() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 5), ("green", GREEN, 2)], 0);
    let err = fails(
        &dir,
        &[
            "split",
            "data",
            "--val-per-class",
            "2",
            "--write-lists",
            "lists",
            "--out",
            "s.json",
        ],
    );
    assert!(
        err.contains("`green` has 2 images") && err.contains("at least 3"),
        "{err}"
    );
    assert!(!err.contains("`red`"), "red is large enough: {err}");
    assert!(err.contains("hint:"), "{err}");
    assert!(!dir.path("lists").exists() && !dir.path("s.json").exists());

    let err = fails(
        &dir,
        &[
            "split",
            "data",
            "--val-per-class",
            "1",
            "--test-per-class",
            "2",
        ],
    );
    assert!(err.contains("`green` has 2 images"), "{err}");

    colours(&dir, "data", &[("blue", BLUE, 1)], 0);
    let err = fails(&dir, &["split", "data", "--val-fraction", "0.3"]);
    assert!(
        err.contains("`blue` has a single image") && !err.contains("`red`"),
        "{err}"
    );

    // Out-of-range values are usage errors (exit 2), named.
    for (flag, value) in [("--val-per-class", "0"), ("--val-fraction", "1.5")] {
        let out = dir.run(&["split", "data", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(flag) && err.contains(value), "{err}");
    }
    let err = fails(&dir, &["split", "nowhere"]);
    assert!(err.contains("nowhere"), "{err}");
    assert!(!dir.path("split.json").exists(), "nothing written");
}

// ---------------------------------------------------------------------------------- list files

#[test]
fn lists_written_by_split_feed_extract_fit_and_eval() {
    let dir = Dir::new();
    colours(
        &dir,
        "data",
        &[("red", RED, 6), ("green", GREEN, 6), ("blue", BLUE, 6)],
        0,
    );
    ok(
        &dir,
        &[
            "split",
            "data",
            "--val-per-class",
            "2",
            "--test-per-class",
            "1",
            "--write-lists",
            "lists",
        ],
    );
    let lists = ["--lists", "lists", "--base", "data"];

    let mut args = vec!["extract", "--model", "tiny"];
    args.extend_from_slice(&lists);
    let json = ok(&dir, &args);
    assert_eq!(
        (&json["images"], &json["extracted"]),
        (&Value::from(18), &Value::from(18)),
        "{json}"
    );

    let json = fit(&dir, &lists, "bundle", &[]);
    assert_eq!(
        (&json["n_train"], &json["n_val"], &json["n_test"]),
        (&Value::from(9), &Value::from(6), &Value::from(3)),
        "{json}"
    );
    assert_eq!(json["backbone_runs"], 0, "extract cached them all: {json}");
    assert_eq!(json["accuracy"], 1.0, "{json}");
    // The bundle's split.json records the lists' split.
    let manifest = read_json(&dir.path("bundle/split.json"));
    let val: Vec<String> = manifest["val"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    let mut listed: Vec<String> = list(&dir.path("lists/validate_list.txt"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let mut val_sorted = val.clone();
    val_sorted.sort();
    listed.sort();
    assert_eq!(val_sorted, listed);

    let mut args = vec!["eval", "--bundle", "bundle"];
    args.extend_from_slice(&lists);
    let json = ok(&dir, &args);
    assert_eq!(json["excluded_training_images"], 9, "{json}");
    assert_eq!(json["n"], 9, "validation and test images: {json}");
    assert_eq!(json["accuracy"], 1.0, "{json}");

    // The lists fix the split: asking for another rule with them is a usage error, not ignored.
    let out = dir.run(&[
        "fit",
        "--lists",
        "lists",
        "--base",
        "data",
        "--val-per-class",
        "3",
        "--model",
        "tiny",
        "--out",
        "b2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--lists"));

    // Lists kept outside the dataset need --base: without it, the error says so.
    let err = fails(
        &dir,
        &[
            "fit", "--lists", "lists", "--model", "tiny", "--out", "nobase",
        ],
    );
    assert!(
        err.contains("18 listed image(s) are missing")
            && err.contains("blue/000.png")
            && err.contains("--base"),
        "{err}"
    );
    assert!(!dir.path("nobase").exists());
}

// ---------------------------------------------------------------------------------- fit

#[test]
fn fit_reports_and_writes_a_complete_bundle() {
    let dir = Dir::new();
    colours(
        &dir,
        "data",
        &[("red", RED, 10), ("green", GREEN, 5), ("blue", BLUE, 8)],
        0,
    );
    let json = fit(
        &dir,
        &["data"],
        "bundle",
        &["--val-fraction", "0.4", "--seed", "3"],
    );
    assert_eq!(strings(&json["classes"]), ["blue", "green", "red"]);
    // Validated: blue round(3.2) = 3, green 2, red 4.
    assert_eq!(
        (&json["n_train"], &json["n_val"]),
        (&Value::from(14), &Value::from(9))
    );
    assert_eq!(json["accuracy"], 1.0, "{json}");
    assert_eq!(json["macro_f1"], 1.0, "{json}");
    assert_eq!(json["backbone_runs"], 23, "{json}");
    assert_eq!(
        row_sums(&json["confusion"]),
        [3, 2, 4],
        "rows are true classes: {json}"
    );
    assert!(diagonal(&json["confusion"]), "{json}");

    for f in ["bundle.json", "report.json", "report.txt", "split.json"] {
        assert!(dir.path("bundle").join(f).is_file(), "{f} missing");
    }
    let bundle = read_json(&dir.path("bundle/bundle.json"));
    assert_eq!(strings(&bundle["classes"]), ["blue", "green", "red"]);
    assert_eq!(bundle["model"]["name"], "tiny");
    let report = read_json(&dir.path("bundle/report.json"));
    assert_eq!(report["accuracy"], json["accuracy"]);
    assert_eq!(report["confusion"], json["confusion"]);
    let text = std::fs::read_to_string(dir.path("bundle/report.txt")).unwrap();
    assert!(text.contains("validat"), "{text}");
    let manifest = read_json(&dir.path("bundle/split.json"));
    let val = manifest["val"].as_array().unwrap();
    for (class, n) in [("blue", 3), ("green", 2), ("red", 4)] {
        assert_eq!(
            val.iter().filter(|e| e["class"] == class).count(),
            n,
            "{manifest}"
        );
    }

    // The features are cached: a second fit runs the backbone on nothing.
    let again = fit(
        &dir,
        &["data"],
        "bundle2.json",
        &["--val-fraction", "0.4", "--seed", "3"],
    );
    assert_eq!(again["backbone_runs"], 0, "{again}");
    assert_eq!(again["confusion"], json["confusion"]);
    assert!(dir.path("bundle2.json").is_file());
    assert!(dir.path("bundle2.report.json").is_file());
}

#[test]
fn fit_accepts_balanced_class_weights() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 12), ("green", GREEN, 4)], 0);
    let json = fit(
        &dir,
        &["data"],
        "bundle",
        &["--class-weight", "balanced", "--val-per-class", "2"],
    );
    assert_eq!(json["accuracy"], 1.0, "{json}");
    assert_eq!(row_sums(&json["confusion"]), [2, 2]);
    let bundle = read_json(&dir.path("bundle/bundle.json"));
    assert_eq!(bundle["training"]["class_weight"], "balanced", "{bundle}");
    let out = dir.run(&[
        "fit",
        "data",
        "--model",
        "tiny",
        "--out",
        "b",
        "--class-weight",
        "heavy",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a bad command line: {err}");
    assert!(err.contains("balanced"), "lists the valid values: {err}");
    assert!(!dir.path("b").exists());
}

#[test]
fn a_failed_fit_leaves_no_bundle() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 4), ("green", GREEN, 1)], 0);
    let err = fails(&dir, &["fit", "data", "--model", "tiny", "--out", "bundle"]);
    assert!(err.contains("`green` has a single image"), "{err}");
    assert!(!dir.path("bundle").exists(), "nothing written");

    // A class whose images are all unreadable fails after extraction, still writing nothing.
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 4)], 0);
    for i in 0..3 {
        dir.write(&format!("data/green/{i}.png"), b"not a png at all");
    }
    let err = fails(&dir, &["fit", "data", "--model", "tiny", "--out", "bundle"]);
    assert!(
        err.contains("`green` has 0 usable training image") && err.contains("add images"),
        "{err}"
    );
    assert!(!dir.path("bundle/bundle.json").exists(), "no bundle");
    assert!(!dir.path("bundle/report.json").exists(), "no report");

    // A failed fit over an earlier bundle leaves it as it was.
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 4), ("green", GREEN, 4)], 0);
    fit(&dir, &["data"], "bundle", &[]);
    let before = std::fs::read(dir.path("bundle/bundle.json")).unwrap();
    colours(&dir, "data", &[("blue", BLUE, 1)], 0);
    let err = fails(&dir, &["fit", "data", "--model", "tiny", "--out", "bundle"]);
    assert!(err.contains("`blue` has a single image"), "{err}");
    assert_eq!(
        std::fs::read(dir.path("bundle/bundle.json")).unwrap(),
        before
    );
}

// ---------------------------------------------------------------------------------- predict

/// A bundle trained on red, green and blue images, in `dir/bundle`.
fn rgb_bundle(dir: &Dir) {
    colours(
        dir,
        "data",
        &[("red", RED, 6), ("green", GREEN, 6), ("blue", BLUE, 6)],
        0,
    );
    let json = fit(dir, &["data"], "bundle", &["--val-per-class", "2"]);
    assert_eq!(json["accuracy"], 1.0, "{json}");
}

#[test]
fn predict_labels_files_folders_and_globs() {
    let dir = Dir::new();
    rgb_bundle(&dir);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    dir.write("new/b.jpg", &jpeg(&tinted(BLUE, 101)));
    dir.write("new/sub/c.png", &png(&tinted(GREEN, 102)));
    dir.write("new/notes.txt", b"not an image");

    let json = ok(
        &dir,
        &[
            "predict",
            "--bundle",
            "bundle",
            "new/a.png",
            "new/b.jpg",
            "new/sub/c.png",
        ],
    );
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 3, "{json}");
    for (name, want) in [("a.png", "red"), ("b.jpg", "blue"), ("c.png", "green")] {
        let e = entry(&json, name);
        assert_eq!(e["label"], want, "{e}");
        let probs = e["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 3, "every class: {e}");
        assert!((total(&e["probabilities"]) - 1.0).abs() < 1e-4, "{e}");
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap();
        assert_eq!(best.0, want, "the label is the most probable class: {e}");
        assert!(e.get("error").is_none(), "{e}");
    }

    // A folder is searched recursively for images; a glob is expanded by qcyn itself.
    let json = ok(&dir, &["predict", "--bundle", "bundle", "new"]);
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    assert_eq!(entry(&json, "c.png")["label"], "green");
    let json = ok(
        &dir,
        &["predict", "--bundle", "bundle/bundle.json", "new/*.png"],
    );
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 1, "only new/a.png matches: {json}");
    assert_eq!(list[0]["label"], "red");

    let json = ok(
        &dir,
        &["predict", "--bundle", "bundle", "new", "--top-k", "1"],
    );
    for e in json.as_array().unwrap() {
        let probs = e["probabilities"].as_object().unwrap();
        assert_eq!(probs.len(), 1, "{e}");
        assert_eq!(probs.keys().next().unwrap(), e["label"].as_str().unwrap());
    }
    let out = dir.run(&["predict", "--bundle", "bundle", "new", "--top-k", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--top-k"));
}

#[test]
fn predict_writes_csv() {
    let dir = Dir::new();
    rgb_bundle(&dir);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    dir.write("new/b.png", &png(&tinted(GREEN, 101)));
    let models = fixtures();
    let out = dir.run(&with_models(
        &models,
        &["predict", "--bundle", "bundle", "new", "--csv"],
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows = csv::Reader::from_reader(stdout.as_bytes());
    let header: Vec<String> = rows.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header[..5],
        ["path", "label", "blue", "green", "red"],
        "{stdout}"
    );
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 2, "{stdout}");
    for r in &records {
        let want = if r[0].ends_with("a.png") {
            "red"
        } else {
            "green"
        };
        assert_eq!(&r[1], want, "{stdout}");
        let sum: f64 = (2..5).map(|i| r[i].parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{stdout}");
    }
}

#[test]
fn predict_reports_missing_and_broken_images_and_labels_the_rest() {
    let dir = Dir::new();
    rgb_bundle(&dir);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    let good = png(&tinted(BLUE, 101));
    dir.write("new/broken.png", &good[..good.len() / 2]);
    let (json, code, err) = q(
        &dir,
        &[
            "predict",
            "--bundle",
            "bundle",
            "new/a.png",
            "new/missing.png",
            "new/broken.png",
            "new/*.gif",
        ],
    );
    assert_eq!(code, 3, "some images could not be predicted: {err}\n{json}");
    assert_eq!(json.as_array().unwrap().len(), 4, "{json}");
    assert_eq!(entry(&json, "a.png")["label"], "red");
    assert!(entry(&json, "a.png").get("error").is_none());
    for name in ["missing.png", "broken.png", "*.gif"] {
        let e = entry(&json, name);
        assert!(
            e["error"].as_str().is_some_and(|s| !s.is_empty()),
            "{name} has a reason: {e}"
        );
        assert!(e["label"].is_null(), "{e}");
    }
    assert!(
        entry(&json, "missing.png")["error"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "{json}"
    );
}

// ---------------------------------------------------------------------------------- eval

#[test]
fn eval_leaves_out_the_training_images() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 6), ("green", GREEN, 6)], 0);
    let fitted = fit(&dir, &["data"], "bundle", &["--val-per-class", "2"]);
    assert_eq!(fitted["n_train"], 8);

    let json = ok(&dir, &["eval", "--bundle", "bundle", "data"]);
    assert_eq!(json["excluded_training_images"], 8, "{json}");
    assert_eq!(json["n"], 4, "{json}");
    assert_eq!(json["accuracy"], 1.0, "{json}");
    assert_eq!(
        json["confusion"], fitted["confusion"],
        "the validation images again"
    );
    assert_eq!(row_sums(&json["confusion"]), [2, 2]);

    // Images the bundle has never seen, and a class it does not know.
    colours(
        &dir,
        "more",
        &[("red", RED, 3), ("green", GREEN, 2), ("blue", BLUE, 2)],
        50,
    );
    let json = ok(&dir, &["eval", "--bundle", "bundle", "more"]);
    assert_eq!(json["excluded_training_images"], 0, "{json}");
    assert_eq!(json["n"], 5, "{json}");
    assert_eq!(row_sums(&json["confusion"]), [2, 3], "green, red: {json}");
    assert!(diagonal(&json["confusion"]), "{json}");
    assert_eq!(strings(&json["unknown_classes"]), ["blue"]);

    // Copies of the training images (another folder, new names): recognised by content, so
    // nothing is left to score.
    let train = strings(&read_json(&dir.path("bundle/bundle.json"))["train_sha256"]);
    assert_eq!(train.len(), 8);
    let split = read_json(&dir.path("bundle/split.json"));
    for (i, e) in split["train"].as_array().unwrap().iter().enumerate() {
        let (path, class) = (e["path"].as_str().unwrap(), e["class"].as_str().unwrap());
        let folder = dir.path("seen").join(class);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(
            dir.path("data").join(path),
            folder.join(format!("copy{i}.png")),
        )
        .unwrap();
    }
    let err = fails(&dir, &["eval", "--bundle", "bundle", "seen"]);
    assert!(err.contains("every image") && err.contains("seen"), "{err}");
}

// ---------------------------------------------------------------------------------- bad input

#[test]
fn bad_list_files_are_clear_errors_and_write_nothing() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 3), ("green", GREEN, 3)], 0);
    let good_train = "green/000.png 0\ngreen/001.png 0\nred/000.png 1\nred/001.png 1\n";
    let good_val = "green/002.png 0\nred/002.png 1\n";
    let try_lists = |train: &str, val: &str| -> std::process::Output {
        dir.write("lists/label_list.txt", b"green\nred\n");
        dir.write("lists/train_list.txt", train.as_bytes());
        dir.write("lists/validate_list.txt", val.as_bytes());
        let _ = std::fs::remove_dir_all(dir.path("bundle"));
        let models = fixtures();
        dir.run(&with_models(
            &models,
            &[
                "fit",
                "--lists",
                "lists",
                "--base",
                "data",
                "--model",
                "tiny",
                "--out",
                "bundle",
                "--threads",
                "1",
            ],
        ))
    };
    // The good lists work, so each failure below is the one line changed.
    let out = try_lists(good_train, good_val);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path("bundle/bundle.json").is_file());

    let cases: &[(&str, &str, &[&str])] = &[
        (
            "green/000.png 0\ngreen/001.png purple\nred/000.png 1\nred/001.png 1\n",
            good_val,
            &[
                "train_list.txt",
                "line 2",
                "unknown class `purple`",
                "classes are: green, red",
                "hint:",
            ],
        ),
        (
            good_train,
            "green/002.png 0\nred/002.png 2\n",
            &[
                "validate_list.txt",
                "line 2",
                "label 2 is out of range",
                "label_list.txt",
                "hint:",
            ],
        ),
        (
            good_train,
            "green/002.png 0\nred/001.png 1\n",
            &[
                "validate_list.txt",
                "`red/001.png` is listed twice",
                "train_list.txt line 4",
                "hint:",
            ],
        ),
        (
            "green/000.png 0\n../x.png 0\nred/000.png 1\nred/001.png 1\n",
            good_val,
            &["train_list.txt", "line 2", "`../x.png`", "escapes"],
        ),
        (
            "green/000.png 0\ngreen/001.png 0\n/etc/hosts 1\nred/001.png 1\n",
            good_val,
            &[
                "train_list.txt",
                "line 3",
                "`/etc/hosts`",
                "absolute",
                "relative to the base folder",
            ],
        ),
        (
            "green/000.png 0\ngreen/001.png 0\nred/000.png 1\nred/404.png 1\n",
            good_val,
            &[
                "missing",
                "red/404.png",
                "train_list.txt line 4",
                "hint:",
                "--base",
            ],
        ),
        (
            "green/000.png\n",
            good_val,
            &["train_list.txt", "line 1", "relative/path label", "hint:"],
        ),
    ];
    // Every message names the list file (or the base folder) and the line; where a `hint:` is
    // wanted, the fix is on its own line.
    for (train, val, wanted) in cases {
        let out = try_lists(train, val);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{train}{val}: {err}");
        for w in *wanted {
            assert!(err.contains(w), "`{w}` not in: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path("bundle").exists(), "nothing written for: {err}");
    }

    // The same checks guard extract and eval.
    try_lists(good_train, good_val);
    std::fs::rename(dir.path("bundle"), dir.path("kept")).unwrap();
    try_lists(good_train, "green/002.png 0\nred/002.png 7\n");
    for cmd in [
        &[
            "extract", "--model", "tiny", "--lists", "lists", "--base", "data",
        ][..],
        &[
            "eval", "--bundle", "kept", "--lists", "lists", "--base", "data",
        ][..],
    ] {
        let err = fails(&dir, cmd);
        assert!(
            err.contains("validate_list.txt") && err.contains("out of range"),
            "{err}"
        );
    }
}

/// A models folder holding a copy of the tiny fixture under `names` (name = the file stem), with
/// `preprocess_mean` as its preprocessing mean.
fn models_dir(dir: &Dir, rel: &str, names: &[(&str, &str)]) -> String {
    let fixtures = project().join("tests/fixtures/models");
    let folder = dir.path(rel);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(fixtures.join("tiny.onnx"), folder.join("tiny.onnx")).unwrap();
    let text = std::fs::read_to_string(fixtures.join("tiny.toml")).unwrap();
    for (name, mean) in names {
        let t = text
            .replace("name = \"tiny\"", &format!("name = \"{name}\""))
            .replace("mean = [0.0, 0.0, 0.0]", &format!("mean = {mean}"));
        assert!(
            t.contains(&format!("name = \"{name}\"")) && t.contains(&format!("mean = {mean}")),
            "the fixture manifest changed: update this test"
        );
        std::fs::write(folder.join(format!("{name}.toml")), t).unwrap();
    }
    folder.display().to_string()
}

#[test]
fn predict_refuses_a_bundle_of_another_model() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 4), ("green", GREEN, 4)], 0);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    let models = models_dir(
        &dir,
        "models",
        &[("tiny", "[0.0, 0.0, 0.0]"), ("other", "[0.5, 0.5, 0.5]")],
    );
    let run = |models: &str, args: &[&str]| {
        let mut all = vec!["--models-dir", models];
        all.extend_from_slice(args);
        dir.run(&all)
    };
    let refused = |out: std::process::Output| -> String {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(out.stdout.is_empty(), "no predictions printed");
        assert!(err.contains("hint:") && !err.contains("panicked"), "{err}");
        err
    };
    for name in ["tiny", "other"] {
        let out = run(
            &models,
            &[
                "fit",
                "data",
                "--model",
                name,
                "--out",
                name,
                "--json",
                "--threads",
                "1",
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run(&models, &["predict", "--bundle", "tiny", "new/a.png"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The bundle says `tiny`, but its head was trained on `other`'s features.
    let mut b = read_json(&dir.path("other/bundle.json"));
    b["model"]["name"] = "tiny".into();
    std::fs::write(dir.path("other/bundle.json"), b.to_string()).unwrap();
    let err = refused(run(&models, &["predict", "--bundle", "other", "new/a.png"]));
    assert!(
        err.contains("`tiny` has changed") && err.contains("[preprocess]"),
        "{err}"
    );

    // The model file is not the one the bundle was trained with.
    let mut b = read_json(&dir.path("tiny/bundle.json"));
    let sha = b["model"]["sha256"].as_str().unwrap().to_string();
    b["model"]["sha256"] = "1".repeat(64).into();
    std::fs::write(dir.path("tiny/bundle.json"), b.to_string()).unwrap();
    let err = refused(run(&models, &["predict", "--bundle", "tiny", "new/a.png"]));
    assert!(err.contains("sha256") && err.contains(&sha[..12]), "{err}");

    // A models folder where `tiny` now preprocesses differently.
    b["model"]["sha256"] = sha.into();
    std::fs::write(dir.path("tiny/bundle.json"), b.to_string()).unwrap();
    let changed = models_dir(&dir, "changed", &[("tiny", "[0.1, 0.1, 0.1]")]);
    let err = refused(run(&changed, &["predict", "--bundle", "tiny", "new/a.png"]));
    assert!(err.contains("[preprocess]"), "{err}");
    let err = refused(run(&changed, &["eval", "--bundle", "tiny", "data"]));
    assert!(err.contains("[preprocess]"), "{err}");

    // The fixtures' `tiny` is not what `other`'s head was trained on either.
    let err = refused(run(
        &fixtures(),
        &["predict", "--bundle", "other", "new/a.png"],
    ));
    assert!(
        err.contains("`tiny` has changed") && err.contains("[preprocess]"),
        "{err}"
    );
    // A models folder without the bundle's model.
    let none = models_dir(&dir, "none", &[("else", "[0.0, 0.0, 0.0]")]);
    let err = refused(run(&none, &["predict", "--bundle", "tiny", "new/a.png"]));
    assert!(err.contains("unknown model `tiny`"), "{err}");
}

#[test]
fn a_damaged_bundle_is_a_clear_error() {
    let dir = Dir::new();
    rgb_bundle(&dir);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    let file = dir.path("bundle/bundle.json");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    for cmd in [
        &["predict", "--bundle", "bundle", "new/a.png"][..],
        &["eval", "--bundle", "bundle", "data"][..],
    ] {
        let err = fails(&dir, cmd);
        assert!(
            err.contains("bundle/bundle.json") && err.contains("damaged or truncated"),
            "{err}"
        );
        assert!(err.contains("qcyn fit"), "says how to fix it: {err}");
    }
    let err = fails(&dir, &["predict", "--bundle", "nowhere", "new/a.png"]);
    assert!(
        err.contains("nowhere/bundle.json") && err.contains("not found"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------- faces

/// A face photo from `.qcyn/testdata/faces`, panicking with the fix when it is missing.
fn face_photo(name: &str) -> PathBuf {
    let p = project().join(".qcyn/testdata/faces").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup (or scripts/fetch_test_images)",
        p.display()
    );
    p
}

fn decode(path: &Path) -> RgbImage {
    qcyn::preprocess::decode_rgb(&std::fs::read(path).unwrap()).expect("test photo decodes")
}

/// Lighter by `d` in every channel.
fn brighter(img: &RgbImage, d: i32) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        p.0 = p.0.map(|v| (v as i32 + d).clamp(0, 255) as u8);
    }
    out
}

#[test]
fn face_mode_fits_and_predicts_per_face() {
    require_runtime();
    require_model_file("yunet.onnx");
    require_model_file("sface.onnx");
    let dir = Dir::new();
    // obama: three photos, and a gradient without a face; biden: one photo, flipped, cropped and
    // brightened.
    for name in ["obama.jpg", "obama2.jpg", "obama3.jpg"] {
        std::fs::create_dir_all(dir.path("faces/obama")).unwrap();
        std::fs::copy(face_photo(name), dir.path("faces/obama").join(name)).unwrap();
    }
    let gradient = RgbImage::from_fn(320, 240, |x, y| Rgb([(x * 4 / 5) as u8, y as u8, 128]));
    dir.write("faces/obama/gradient.png", &png(&gradient));
    let biden = decode(&face_photo("biden.jpg"));
    let (w, h) = biden.dimensions();
    // Half size keeps the face well above the detector's minimum and the test quick.
    let biden = imageops::resize(&biden, w / 2, h / 2, imageops::FilterType::Triangle);
    let (w, h) = biden.dimensions();
    dir.write("faces/biden/biden.jpg", &jpeg(&biden));
    dir.write(
        "faces/biden/flip.jpg",
        &jpeg(&imageops::flip_horizontal(&biden)),
    );
    dir.write(
        "faces/biden/crop.jpg",
        &jpeg(&imageops::crop_imm(&biden, w / 10, 0, w * 8 / 10, h * 2 / 3).to_image()),
    );
    dir.write("faces/biden/bright.jpg", &jpeg(&brighter(&biden, 35)));
    // To predict: a face of a known person not trained on, a stranger, and no face at all.
    std::fs::create_dir_all(dir.path("new")).unwrap();
    std::fs::copy(
        face_photo("obama_partial_face.jpg"),
        dir.path("new/obama.jpg"),
    )
    .unwrap();
    std::fs::copy(face_photo("astronaut.png"), dir.path("new/astronaut.png")).unwrap();
    dir.write("new/none.png", &png(&gradient));

    let (json, code, err) = dir.json(&[
        "fit",
        "faces",
        "--model",
        "face",
        "--val-per-class",
        "1",
        "--out",
        "bundle",
    ]);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        code, 3,
        "an image without a face was left out: {err}\n{json}"
    );
    let no_face = json["no_face"].as_array().unwrap();
    assert_eq!(no_face.len(), 1, "{json}");
    assert!(
        no_face[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("gradient.png"),
        "{json}"
    );
    assert_eq!(strings(&json["classes"]), ["biden", "obama"]);
    // Every validation image counts (the gradient too, as wrong, when it is one); a training
    // image without a face is not trained on.
    let trained_on = no_face[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not trained on");
    assert_eq!(
        json["n_train"].as_u64().unwrap() + json["n_val"].as_u64().unwrap(),
        if trained_on { 7 } else { 8 },
        "{json}"
    );
    assert!(json["open_set"]["threshold"].is_number(), "{json}");

    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "--bundle", "bundle", "new"];
        args.extend_from_slice(extra);
        let (json, code, err) = dir.json(&args);
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(code, 0, "{err}\n{json}");
        json
    };
    let json = predict(&[]);
    assert_eq!(json.as_array().unwrap().len(), 3, "{json}");
    for name in ["obama.jpg", "astronaut.png"] {
        let e = entry(&json, name);
        let faces = e["faces"].as_array().unwrap_or_else(|| panic!("{e}"));
        assert!(!faces.is_empty(), "{e}");
        for f in faces {
            let b: Vec<f64> = f["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(b.len() == 4 && b[2] > 20.0 && b[3] > 20.0, "{f}");
            let score = f["score"].as_f64().unwrap();
            assert!(score > 0.5 && score <= 1.0, "{f}");
            assert!((total(&f["probabilities"]) - 1.0).abs() < 1e-4, "{f}");
            assert!(f["label"].is_string() && f["similarity"].is_number(), "{f}");
        }
        assert_eq!(e["label"], faces[0]["label"], "{e}");
        assert_eq!(e["probabilities"], faces[0]["probabilities"], "{e}");
    }
    let none = entry(&json, "none.png");
    assert_eq!(none["label"], "no_face", "{none}");
    assert_eq!(none["faces"].as_array().map(Vec::len), Some(0), "{none}");
    assert_eq!(entry(&json, "obama.jpg")["label"], "obama", "{json}");
    assert_eq!(
        entry(&json, "astronaut.png")["label"],
        "unknown",
        "a stranger: {json}"
    );

    let labels = |json: &Value| -> Vec<String> {
        json.as_array()
            .unwrap()
            .iter()
            .flat_map(|e| e["faces"].as_array().unwrap().iter())
            .map(|f| f["label"].as_str().unwrap().to_string())
            .collect()
    };
    let all = predict(&["--unknown-threshold", "1.0"]);
    let l = labels(&all);
    assert!(!l.is_empty() && l.iter().all(|l| l == "unknown"), "{all}");
    let never = predict(&["--unknown-threshold", "-1"]);
    let l = labels(&never);
    assert!(
        !l.is_empty() && l.iter().all(|l| l == "obama" || l == "biden"),
        "{never}"
    );
    assert_eq!(entry(&never, "none.png")["label"], "no_face");

    // `--no-face whole`: the gradient is embedded whole and trained on; the bundle remembers, so
    // predict answers for an image without a face too (no face box).
    let (json, code, err) = dir.json(&[
        "fit",
        "faces",
        "--model",
        "face",
        "--val-per-class",
        "1",
        "--no-face",
        "whole",
        "--out",
        "whole",
    ]);
    assert_eq!(code, 0, "{err}\n{json}");
    assert_eq!(json["no_face"].as_array().unwrap().len(), 0, "{json}");
    assert_eq!(
        json["n_train"].as_u64().unwrap() + json["n_val"].as_u64().unwrap(),
        8,
        "{json}"
    );
    let (json, code, err) = dir.json(&[
        "predict",
        "--bundle",
        "whole",
        "new",
        "--unknown-threshold",
        "-1",
    ]);
    assert_eq!(code, 0, "{err}");
    let none = entry(&json, "none.png");
    assert!(
        none["label"] == "obama" || none["label"] == "biden",
        "{none}"
    );
    assert_eq!(none["faces"].as_array().map(Vec::len), Some(0), "{none}");
    assert!((total(&none["probabilities"]) - 1.0).abs() < 1e-4, "{none}");
}

// ------------------------------------------------------------------- found by review

#[test]
fn fit_refuses_one_class_and_a_split_layout() {
    let dir = Dir::new();
    colours(&dir, "one", &[("red", RED, 6)], 0);
    let err = fails(&dir, &["fit", "one", "--model", "tiny", "--out", "b"]);
    assert!(
        err.contains("only one class") && err.contains("`red`"),
        "{err}"
    );
    assert!(!dir.path("b/bundle.json").exists());

    // photos/train/<class> + photos/val/<class>: the classes are not `train` and `val`.
    colours(&dir, "tv/train", &[("red", RED, 4), ("green", GREEN, 4)], 0);
    colours(&dir, "tv/val", &[("red", RED, 2), ("green", GREEN, 2)], 10);
    let err = fails(&dir, &["fit", "tv", "--model", "tiny", "--out", "b"]);
    assert!(
        err.contains("looks like a split") && err.contains("tv/train"),
        "{err}"
    );
}

#[test]
fn a_class_too_small_to_cross_validate_is_named_with_the_fix() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 6), ("green", GREEN, 2)], 0);
    let err = fails(&dir, &["fit", "data", "--model", "tiny", "--out", "b"]);
    assert!(
        err.contains("`green` has 1 usable training image") && err.contains("--l2"),
        "{err}"
    );
    // The fix the hint gives works.
    let (json, code, err) = dir.json(&with_models(
        &fixtures(),
        &["fit", "data", "--model", "tiny", "--out", "b", "--l2", "1"],
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["n_train"], 6, "{json}");
}

#[test]
fn hidden_folders_and_symlink_loops_are_not_read() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 3), ("green", GREEN, 3)], 0);
    dir.write("data/red/.thumbnails/t.png", &png(&tinted(GREEN, 99)));
    std::os::unix::fs::symlink("..", dir.path("data/red/up")).unwrap();
    let (json, code, err) = dir.json(&["split", "data", "--val-per-class", "1", "--no-group"]);
    assert!(code == 0 || code == 3, "{err}");
    assert_eq!(
        json["n_train"].as_u64().unwrap() + json["n_val"].as_u64().unwrap(),
        6,
        "{json}"
    );
    assert!(json["skipped"].to_string().contains("loop"), "{json}");
}

#[test]
fn a_report_passed_as_the_bundle_is_named_for_what_it_is() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 4), ("green", GREEN, 4)], 0);
    fit(&dir, &["data"], "bundle", &["--val-per-class", "1"]);
    let err = fails(
        &dir,
        &[
            "predict",
            "--bundle",
            "bundle/report.json",
            "data/red/000.png",
        ],
    );
    assert!(
        err.contains("is not a bundle") && err.contains("bundle.json"),
        "{err}"
    );
}

#[test]
fn option_values_out_of_range_are_usage_errors() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 3), ("green", GREEN, 3)], 0);
    for args in [
        &["extract", "data", "--batch", "0"][..],
        &["extract", "data", "--batch", "100000"],
        &["fit", "data", "--out", "b", "--val-fraction", "1.5"],
        &["fit", "data", "--out", "b", "--folds", "1"],
        &["fit", "data", "--out", "b", "--l2", "nan"],
        &["fit", "data", "--out", "b", "--false-reject-rate", "2"],
        &["predict", "--bundle", "b", "data", "--top-k", "0"],
        &["split", "data", "--val-per-class", "0"],
        &["extract", "data", "--model", "face", "--max-yaw", "100"],
        &["fit", "data", "--out", "b", "--min-sharpness", "-1"],
        &["faces", "data", "--out", "c", "--min-face-score", "1.5"],
    ] {
        let out = dir.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An existing file as --out is refused before any work.
    dir.write("afile", b"x");
    let err = fails(&dir, &["fit", "data", "--model", "tiny", "--out", "afile"]);
    assert!(
        err.contains("afile") && err.contains("existing file"),
        "{err}"
    );
}

#[test]
fn every_command_that_opens_a_backbone_honours_device() {
    let dir = Dir::new();
    rgb_bundle(&dir);
    dir.write("new/a.png", &png(&tinted(RED, 100)));
    // This machine has no GPU (nor runtime/gpu), so asking for CUDA is a clear error: a command
    // that ran on the CPU instead would ignore --device. The backbone is opened only when an image
    // is not in the feature cache (and `fit` cached them all), hence --no-cache.
    let cuda = ["--device", "cuda"];
    for args in [
        &["predict", "--bundle", "bundle", "new", "--no-cache"][..],
        &["eval", "--bundle", "bundle", "data", "--no-cache"],
        &["extract", "data", "--model", "tiny", "--no-cache"],
        &[
            "fit",
            "data",
            "--model",
            "tiny",
            "--out",
            "b2",
            "--no-cache",
        ],
        &["bench", "--model", "tiny", "--seconds", "0", "--quiet"],
    ] {
        let err = fails(&dir, &[args, &cuda].concat());
        assert!(
            err.contains("CUDA") && err.contains("--device cpu"),
            "{args:?}: {err}"
        );
    }
    // `faces` runs the real face model from the project's models folder.
    require_model_file("yunet.onnx");
    require_model_file("sface.onnx");
    let out = dir.run(&["faces", "data", "--out", "crops", "--device", "cuda"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CUDA") && !err.contains("panicked"), "{err}");
}

/// An unreadable validation image is listed under `skipped` and scored as a wrong answer:
/// `n_val` counts it, and accuracy is over every validation image the user gave.
#[test]
fn an_unreadable_validation_image_counts_as_wrong() {
    require_runtime();
    let dir = Dir::new();
    tiny_dataset(&dir);
    dir.write("data/red/broken.png", b"not an image");
    let mut train = String::new();
    let mut val = String::new();
    for (k, class) in ["red", "blue"].iter().enumerate() {
        for i in 0..10 {
            let line = format!("{class}/p{i}.png {k}\n");
            if i < 7 {
                train.push_str(&line)
            } else {
                val.push_str(&line)
            }
        }
    }
    val.push_str("red/broken.png 0\n");
    dir.write("lists/label_list.txt", b"red\nblue\n");
    dir.write("lists/train_list.txt", train.as_bytes());
    dir.write("lists/validate_list.txt", val.as_bytes());
    let (r, code, err) = q_fixture(
        &dir,
        &[
            "fit", "--lists", "lists", "--base", "data", "--model", "tiny", "--l2", "1", "--out",
            "b",
        ],
    );
    assert_eq!(code, 3, "done, with an image skipped: {err}");
    assert_eq!(r["n_val"], 7, "{r}");
    let right = r["confusion"][0][0].as_u64().unwrap() + r["confusion"][1][1].as_u64().unwrap();
    let acc = r["accuracy"].as_f64().unwrap();
    assert!(
        (acc - right as f64 / 7.0).abs() < 1e-9,
        "accuracy over all 7, the broken one wrong: {r}"
    );
    assert!(r["skipped"].to_string().contains("broken.png"), "{r}");
    let answers = r["validation_images"].as_array().unwrap();
    assert_eq!(answers.len(), 7);
    // eval counts it the same way (the training images are excluded by content).
    let (e, code, err) = q_fixture(&dir, &["eval", "--bundle", "b", "data"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(e["n"], 7, "{e}");
    assert!(
        (e["accuracy"].as_f64().unwrap() - acc).abs() < 1e-9,
        "{e} vs {r}"
    );
}

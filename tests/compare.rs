//! `qcyn compare` on the tiny fixture model (features: the channel means and the maximum): its
//! JSON contract, determinism per seed, images that cannot be decoded counted as misses, and the
//! clear errors on bad input; then the fit report's class-weight comparison and calibration.
use std::collections::BTreeSet;

use image::{Rgb, RgbImage};
use serde_json::Value;

use crate::util::*;

const RED: [u8; 3] = [215, 35, 30];
const GREEN: [u8; 3] = [30, 200, 45];
const BLUE: [u8; 3] = [40, 45, 210];

fn fixtures() -> String {
    project()
        .join("tests/fixtures/models")
        .display()
        .to_string()
}

/// An image of colour `c`, its size and texture varied by `i`, with `noise` added to its whole
/// colour (deterministic per `i`), so classes overlap when `noise` is large.
fn tinted(c: [u8; 3], i: u32, noise: i32) -> RgbImage {
    let shift = |k: u32| -> i32 {
        if noise == 0 {
            return 0;
        }
        let h = (i.wrapping_mul(2_654_435_761).wrapping_add(k * 40_503)) >> 7;
        (h % (2 * noise as u32 + 1)) as i32 - noise
    };
    let base = [shift(0), shift(1), shift(2)];
    let mut img = RgbImage::from_fn(16 + i % 5, 12 + i % 3, |x, y| {
        let d = ((x * 3 + y * 5 + i * 7) % 21) as i32 - 10;
        let mut p = [0u8; 3];
        for k in 0..3 {
            p[k] = (c[k] as i32 + d + base[k]).clamp(0, 255) as u8;
        }
        Rgb(p)
    });
    let corner = img.get_pixel_mut(0, 0);
    corner.0[0] = (i % 251) as u8;
    corner.0[1] = (i / 251) as u8;
    img
}

fn colours(dir: &Dir, rel: &str, classes: &[(&str, [u8; 3], u32)], noise: i32) {
    for (k, &(name, c, n)) in classes.iter().enumerate() {
        for i in 0..n {
            dir.write(
                &format!("{rel}/{name}/{i:03}.png"),
                &png(&tinted(c, i + 1000 * k as u32, noise)),
            );
        }
    }
}

/// `qcyn --models-dir <fixtures> args… --json`: (json, exit code, stderr), never a panic.
fn q(dir: &Dir, args: &[&str]) -> (Value, i32, String) {
    let models = fixtures();
    let mut all = vec!["--models-dir", models.as_str()];
    all.extend_from_slice(args);
    let (json, code, err) = dir.json(&all);
    assert!(!err.contains("panicked"), "{err}");
    (json, code, err)
}

/// Runs `qcyn --models-dir <fixtures> args…`; returns (exit code, stderr).
fn run(dir: &Dir, args: &[&str]) -> (i32, String) {
    let models = fixtures();
    let mut all = vec!["--models-dir", models.as_str()];
    all.extend_from_slice(args);
    let out = dir.run(&all);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code().unwrap_or(-1), err)
}

fn compare(dir: &Dir, extra: &[&str]) -> Value {
    let mut args = vec!["compare", "data", "--models", "tiny", "--threads", "1"];
    args.extend_from_slice(extra);
    let (json, code, err) = q(dir, &args);
    assert_eq!(code, 0, "{err}\n{json}");
    json
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

#[test]
fn compare_json_follows_the_contract_and_recommends_the_simplest_among_ties() {
    let dir = Dir::new();
    colours(
        &dir,
        "data",
        &[("red", RED, 8), ("green", GREEN, 8), ("blue", BLUE, 8)],
        0,
    );
    let json = compare(&dir, &["--repeats", "3", "--val-per-class", "2"]);
    let rows = json["rows"].as_array().expect("rows");
    let recipes: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["head"].as_str().unwrap().to_string(),
                r["class_weight"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("centroid", "n/a"),
        ("knn", "balanced"),
        ("knn", "none"),
        ("softmax", "balanced"),
        ("softmax", "none"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(recipes, want, "{json}");
    for r in rows {
        assert_eq!(r["model"], "tiny");
        assert_eq!(r["n_repeats"], 3);
        let mean = f(&r["accuracy_mean"]);
        let ci = floats(&r["accuracy_ci95"]);
        assert_eq!(ci.len(), 2);
        assert!(ci[0] <= mean && mean <= ci[1], "{r}");
        assert!((0.0..=1.0).contains(&f(&r["macro_f1_mean"])));
        // Colours this far apart are told apart by every head on every repeat.
        assert_eq!(mean, 1.0, "{r}");
        assert_eq!(floats(&r["accuracy_per_repeat"]).len(), 3);
    }
    // All tied at 1.000: the simplest recipe wins.
    let rec = &json["recommended"];
    assert_eq!(
        (&rec["model"], &rec["head"], &rec["class_weight"]),
        (
            &Value::from("tiny"),
            &Value::from("centroid"),
            &Value::from("n/a")
        ),
        "{json}"
    );
    assert!(rec["why"].as_str().unwrap().contains("simplest"), "{rec}");
    assert_eq!(json["n_images"], 24);
    assert_eq!(json["n_val"], 6);
    assert_eq!(json["seeds"], serde_json::json!([0, 1, 2]));
    assert!(json["interval"].as_str().unwrap().contains("t-interval"));

    // --heads chooses heads; the text output has the table and the recommendation.
    let json = compare(&dir, &["--repeats", "2", "--heads", "softmax"]);
    assert_eq!(json["rows"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["recommended"]["head"], "softmax");
    let models = fixtures();
    let out = dir.run(&[
        "--models-dir",
        &models,
        "compare",
        "data",
        "--models",
        "tiny",
        "--repeats",
        "2",
        "--heads",
        "knn,centroid",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("95% interval") && text.contains("recommended (*): tiny + centroid"),
        "{text}"
    );
    assert!(!text.contains("softmax"), "{text}");
}

#[test]
fn compare_is_deterministic_per_seed_and_each_repeat_has_its_own() {
    let dir = Dir::new();
    // Overlapping colours, so scores vary between splits.
    colours(
        &dir,
        "data",
        &[("red", RED, 10), ("green", [150, 110, 40], 10)],
        90,
    );
    let a = compare(
        &dir,
        &["--repeats", "3", "--val-per-class", "3", "--seed", "0"],
    );
    let b = compare(
        &dir,
        &["--repeats", "3", "--val-per-class", "3", "--seed", "0"],
    );
    let c = compare(
        &dir,
        &["--repeats", "3", "--val-per-class", "3", "--seed", "1"],
    );
    assert_eq!(a["rows"], b["rows"], "same seed, same scores");
    assert_eq!(a["recommended"], b["recommended"]);
    // Repeat r uses seed S + r: seeds 0,1,2 and 1,2,3 share two repeats.
    let per = |j: &Value, i: usize| floats(&j["rows"][i]["accuracy_per_repeat"]);
    let mut varied = false;
    for i in 0..a["rows"].as_array().unwrap().len() {
        assert_eq!(per(&a, i)[1..], per(&c, i)[..2], "row {i}");
        varied |= per(&a, i).iter().any(|&x| x != per(&a, i)[0]);
    }
    assert!(
        varied,
        "the data should make scores vary between splits: {a}"
    );
}

#[test]
fn an_image_that_cannot_be_decoded_is_listed_and_a_miss_when_validated() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 5), ("green", GREEN, 5)], 0);
    dir.write("data/red/broken.png", b"this is not a png");
    let models = fixtures();
    let mut args = vec!["--models-dir", models.as_str()];
    args.extend_from_slice(&[
        "compare",
        "data",
        "--models",
        "tiny",
        "--threads",
        "1",
        "--repeats",
        "8",
        "--val-per-class",
        "3",
        "--heads",
        "centroid",
        // Tinted copies of one colour: near-duplicates, split image by image here.
        "--no-group",
    ]);
    let (json, code, err) = dir.json(&args);
    assert_eq!(code, 3, "finished, with an image left out: {err}");
    let left = json["models"][0]["left_out"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{json}");
    assert!(left[0]["path"].as_str().unwrap().ends_with("broken.png"));
    assert_eq!(json["n_images"], 11, "the broken image counts");
    let acc = floats(&json["rows"][0]["accuracy_per_repeat"]);
    // Where `qcyn split` puts the broken image with each seed decides that repeat's accuracy.
    let mut validated = 0;
    for (seed, &a) in acc.iter().enumerate() {
        let out = dir.run(&[
            "split",
            "data",
            "--val-per-class",
            "3",
            "--seed",
            &seed.to_string(),
            "--out",
            "s.json",
            "--quiet",
            "--no-group",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m: Value = serde_json::from_slice(&std::fs::read(dir.path("s.json")).unwrap()).unwrap();
        let in_val = m["val"].to_string().contains("broken.png");
        validated += usize::from(in_val);
        assert_eq!(
            a,
            if in_val { 5.0 / 6.0 } else { 1.0 },
            "seed {seed}: {json}"
        );
    }
    assert!(
        validated > 0 && validated < 8,
        "8 seeds put it on both sides"
    );
}

#[test]
fn compare_refuses_bad_input_with_the_fix() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 6), ("green", GREEN, 2)], 0);
    // A class too small for the rule and the softmax head's cross-validation.
    let (code, err) = run(
        &dir,
        &[
            "compare",
            "data",
            "--models",
            "tiny",
            "--val-per-class",
            "1",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("class `green` has 2 image(s)") && err.contains("needs at least 3"),
        "{err}"
    );
    assert!(
        err.contains("hint:") && err.contains("lower --val-per-class"),
        "{err}"
    );
    assert!(
        !err.contains("`red`"),
        "only the short class is named: {err}"
    );
    // Without the softmax head, 1 training image per class is enough.
    let json = compare(&dir, &["--val-per-class", "1", "--heads", "centroid,knn"]);
    assert_eq!(json["rows"].as_array().unwrap().len(), 3);

    // One class.
    colours(&dir, "one", &[("red", RED, 6)], 0);
    let (code, err) = run(&dir, &["compare", "one", "--models", "tiny"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("only one class") && err.contains("`red`"),
        "{err}"
    );

    // A model that is not known, and one whose file is not installed.
    let (code, err) = run(&dir, &["compare", "data", "--models", "tiny,nosuch"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown model `nosuch`") && err.contains("tiny"),
        "{err}"
    );
    let text = std::fs::read_to_string(project().join("tests/fixtures/models/tiny.toml")).unwrap();
    let missing = text
        .replace("name = \"tiny\"", "name = \"absent\"")
        .replace("file = \"tiny.onnx\"", "file = \"absent.onnx\"");
    assert!(
        missing.contains("absent.onnx"),
        "the fixture manifest changed"
    );
    dir.write("models/absent.toml", missing.as_bytes());
    let out = dir.run(&[
        "--models-dir",
        &dir.path("models").display().to_string(),
        "compare",
        "data",
        "--models",
        "absent",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("model `absent` is not installed")
            && err.contains("absent.onnx")
            && err.contains("scripts/setup"),
        "{err}"
    );

    // Unknown head names and too few repeats are command-line errors listing what is valid.
    let (code, err) = run(&dir, &["compare", "data", "--heads", "softmax,forest"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("forest")
            && err.contains("softmax")
            && err.contains("centroid")
            && err.contains("knn"),
        "{err}"
    );
    let (code, err) = run(&dir, &["compare", "data", "--repeats", "1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 2"), "{err}");
}

fn fit(dir: &Dir, data: &str, out: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "fit",
        data,
        "--model",
        "tiny",
        "--out",
        out,
        "--threads",
        "1",
    ];
    args.extend_from_slice(extra);
    let (json, code, err) = q(dir, &args);
    assert_eq!(code, 0, "{err}\n{json}");
    json
}

#[test]
fn fit_compares_class_weights_only_when_classes_are_imbalanced() {
    let dir = Dir::new();
    // Training counts 6 and 4 (2 of each validated): a ratio of exactly 1.5 is not imbalanced.
    colours(&dir, "even", &[("red", RED, 8), ("green", GREEN, 6)], 0);
    let json = fit(&dir, "even", "b1", &["--val-per-class", "2"]);
    assert!(json.get("class_weight_comparison").is_none(), "{json}");

    // 10 vs 2: imbalanced; both weightings are fitted and scored on the same validation images.
    colours(&dir, "uneven", &[("red", RED, 12), ("green", GREEN, 4)], 0);
    let json = fit(&dir, "uneven", "b2", &["--val-per-class", "2"]);
    let c = &json["class_weight_comparison"];
    assert_eq!(c["largest"]["class"], "red", "{json}");
    assert_eq!(c["largest"]["count"], 10);
    assert_eq!(c["smallest"]["class"], "green");
    assert_eq!(c["imbalance"], 5.0);
    assert_eq!(c["used"], "none");
    assert!(c["default"] == "none" || c["default"] == "balanced", "{c}");
    for w in ["none", "balanced"] {
        assert_eq!(c[w]["accuracy"], 1.0, "{c}");
        assert!(c[w]["macro_f1"].is_number() && c[w]["chosen_l2"].is_number());
    }
    assert_eq!(
        c["none"]["accuracy"], json["accuracy"],
        "the fit's own scores"
    );
    let json = fit(
        &dir,
        "uneven",
        "b3",
        &["--val-per-class", "2", "--class-weight", "balanced"],
    );
    assert_eq!(json["class_weight_comparison"]["used"], "balanced");
    assert_eq!(
        json["class_weight_comparison"]["balanced"]["accuracy"],
        json["accuracy"]
    );
    let text = std::fs::read_to_string(dir.path("b3/report.txt")).unwrap();
    assert!(
        text.contains("classes are imbalanced (5.0×") && text.contains("(used)"),
        "{text}"
    );
}

#[test]
fn the_validation_report_has_calibration() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 6), ("green", GREEN, 6)], 0);
    let json = fit(&dir, "data", "b", &["--val-per-class", "2"]);
    let cal = &json["validation"]["calibration"];
    let ece = f(&cal["ece"]);
    assert!((0.0..=1.0).contains(&ece), "{cal}");
    let bins = cal["all"]["reliability"].as_array().unwrap();
    assert_eq!(bins.len(), 10);
    let counted: u64 = bins.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 4, "every validation image is in one bin");
    assert_eq!(cal["per_class"].as_array().unwrap().len(), 2);
    assert_eq!(cal["per_class"][0]["class"], "green");
    // ECE is |accuracy − confidence| weighted by bin; with every image right, it is 1 − mean
    // confidence.
    assert_eq!(json["accuracy"], 1.0);
    assert!(
        (ece - (1.0 - f(&cal["all"]["mean_confidence"]))).abs() < 1e-9,
        "{cal}"
    );
    let text = std::fs::read_to_string(dir.path("b/report.txt")).unwrap();
    assert!(text.contains("expected calibration error"), "{text}");
}

#[test]
fn compare_honours_device() {
    let dir = Dir::new();
    colours(&dir, "data", &[("red", RED, 6), ("green", GREEN, 6)], 0);
    let (code, err) = run(
        &dir,
        &[
            "compare",
            "data",
            "--models",
            "tiny",
            "--no-cache",
            "--device",
            "cuda",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CUDA") && err.contains("--device cpu"),
        "{err}"
    );
}

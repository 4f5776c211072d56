//! Issue 13: the pretrained Xception (parity with Keras), fused models (`--model a+b`, manifests
//! of kind `fusion`), the default model, and the contract of `qcyn models --json` and `fit --json`.
use std::path::Path;

use image::{Rgb, RgbImage};
use qcyn::backbone::SessionOptions;
use qcyn::models::Model;
use serde_json::Value;

use crate::util::*;

/// A `.npy` file of little-endian float32 in C order: (shape, values).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/setup", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let (len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    assert!(
        header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let inside = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = inside[..inside.find(')').unwrap()]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[start + len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

#[test]
fn xception_matches_the_keras_reference() {
    let model = Model::load(&project().join("models/xception.toml")).unwrap();
    let path = require_model_file("xception.onnx");
    assert_eq!(
        qcyn::models::sha256_file(&path).unwrap(),
        model.manifest.sha256().unwrap().to_string()
    );
    // Keras' own features on the fixed input (NHWC, already scaled to [-1, 1))
    let (out_shape, want) =
        read_npy(&project().join("tests/fixtures/reference/xception_keras/ref_out.npy"));
    assert_eq!(out_shape, [2, 2048]);
    let (in_shape, x) = read_npy(&project().join(".qcyn/testdata/xception_keras_ref_in.npy"));
    assert_eq!(in_shape, [2, 299, 299, 3]);
    let mut nchw = vec![0f32; x.len()];
    for n in 0..2 {
        for h in 0..299 {
            for w in 0..299 {
                for c in 0..3 {
                    nchw[((n * 3 + c) * 299 + h) * 299 + w] = x[((n * 299 + h) * 299 + w) * 3 + c];
                }
            }
        }
    }
    let mut session =
        qcyn::backbone::open_session(&ort_env(), &path, SessionOptions::default()).unwrap();
    let input = ort::value::TensorRef::from_array_view(([2usize, 3, 299, 299], &nchw[..])).unwrap();
    let out = session.run(ort::inputs!["input" => input]).unwrap();
    let (shape, got) = out["features"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&shape[..], [2, 2048]);
    let max = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-4, "max abs difference from Keras {max}");
}

#[test]
fn models_json_keeps_the_contract() {
    let (json, code, err) = Dir::new().json(&["models"]);
    assert_eq!(code, 0, "{err}");
    let list = json.as_array().unwrap();
    let x = list
        .iter()
        .find(|m| m["name"] == "xception")
        .expect("xception listed");
    assert_eq!(x["random_weights"], false);
    assert_eq!(x["feature_dim"], 2048);
    let defaults: Vec<&Value> = list.iter().filter(|m| m["default"] == true).collect();
    assert_eq!(defaults.len(), 1, "exactly one default: {json}");
    let d = defaults[0];
    assert_eq!(d["random_weights"], false, "the default is pretrained");
    assert_eq!(d["available"], true);
    // Offline, Xception71 has random weights: the default is the fusion, and says why.
    assert_eq!(d["name"], "xception+mobilenetv2");
    assert_eq!(d["kind"], "fusion");
    assert_eq!(d["feature_dim"], 2048 + 1280);
    assert_eq!(d["parts"], serde_json::json!(["xception", "mobilenetv2"]));
    assert!(d["default_reason"].as_str().unwrap().contains("Xception71"));
    let text = Dir::new().run(&["models"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("default: xception+mobilenetv2 ("), "{text}");
}

// ---------------------------------------------------------------- fused tiny models

const RED: [u8; 3] = [210, 40, 35];
const GREEN: [u8; 3] = [30, 200, 45];

fn tinted(c: [u8; 3], i: u32) -> RgbImage {
    RgbImage::from_fn(16 + i % 5, 12 + i % 3, |x, y| {
        let d = ((x * 3 + y * 5 + i * 7) % 21) as i32 - 10 + (i as i32 % 7);
        Rgb(c.map(|v| (v as i32 + d).clamp(0, 255) as u8))
    })
}

/// A models folder with the tiny fixture as `a` (mean 0) and `b` (mean 0.5), the project's face
/// manifest, and `extra` manifests (name, text).
fn models(dir: &Dir, extra: &[(&str, &str)]) -> String {
    let fixtures = project().join("tests/fixtures/models");
    let folder = dir.path("models");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::copy(fixtures.join("tiny.onnx"), folder.join("tiny.onnx")).unwrap();
    let text = std::fs::read_to_string(fixtures.join("tiny.toml")).unwrap();
    for (name, mean) in [("a", "[0.0, 0.0, 0.0]"), ("b", "[0.5, 0.5, 0.5]")] {
        let t = text
            .replace("name = \"tiny\"", &format!("name = \"{name}\""))
            .replace("mean = [0.0, 0.0, 0.0]", &format!("mean = {mean}"));
        std::fs::write(folder.join(format!("{name}.toml")), t).unwrap();
    }
    std::fs::copy(project().join("models/face.toml"), folder.join("face.toml")).unwrap();
    for (name, text) in extra {
        std::fs::write(folder.join(format!("{name}.toml")), text).unwrap();
    }
    folder.display().to_string()
}

fn data(dir: &Dir, rel: &str, n: u32, offset: u32) {
    for (class, c) in [("red", RED), ("green", GREEN)] {
        for i in 0..n {
            dir.write(
                &format!("{rel}/{class}/{i:03}.png"),
                &png(&tinted(c, offset + i)),
            );
        }
    }
}

fn run(dir: &Dir, models: &str, args: &[&str]) -> (Value, i32, String) {
    let mut all = vec!["--models-dir", models];
    all.extend_from_slice(args);
    let (json, code, err) = dir.json(&all);
    assert!(!err.contains("panicked"), "{err}");
    (json, code, err)
}

fn ok(dir: &Dir, models: &str, args: &[&str]) -> Value {
    let (json, code, err) = run(dir, models, args);
    assert_eq!(code, 0, "qcyn {args:?}: {err}\n{json}");
    json
}

fn fails(dir: &Dir, models: &str, args: &[&str]) -> String {
    let mut all = vec!["--models-dir", models];
    all.extend_from_slice(args);
    let out = dir.run(&all);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "qcyn {args:?}: {err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    err
}

#[test]
fn a_fused_model_works_with_extract_fit_eval_and_predict() {
    require_runtime();
    let dir = Dir::new();
    let m = models(&dir, &[]);
    data(&dir, "data", 6, 0);
    data(&dir, "other", 3, 50);
    dir.write("new/r.png", &png(&tinted(RED, 99)));
    // `a` alone first: the fusion then runs only `b`, reusing a's cached features.
    let a = ok(
        &dir,
        &m,
        &["extract", "data", "--model", "a", "--threads", "1"],
    );
    assert_eq!(a["backbone_runs"], 12);
    let ab = ok(
        &dir,
        &m,
        &["extract", "data", "--model", "a+b", "--threads", "1"],
    );
    assert_eq!(ab["model"], "a+b");
    assert_eq!(ab["images"], 12);
    assert_eq!(ab["backbone_runs"], 12, "only b ran: {ab}");
    let again = ok(
        &dir,
        &m,
        &["extract", "data", "--model", "a+b", "--threads", "1"],
    );
    assert_eq!(again["backbone_runs"], 0);
    assert_eq!(again["cached"], 12);
    let b = ok(
        &dir,
        &m,
        &["extract", "data", "--model", "b", "--threads", "1"],
    );
    assert_eq!(
        b["backbone_runs"], 0,
        "b's features were cached by the fusion"
    );

    let fit = ok(
        &dir,
        &m,
        &[
            "fit",
            "data",
            "--model",
            "a+b",
            "--val-per-class",
            "2",
            "--seed",
            "0",
            "--out",
            "bundle",
            "--threads",
            "1",
        ],
    );
    assert_eq!(fit["model"], "a+b");
    assert_eq!(fit["backbone_runs"], 0);
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(dir.path("bundle/bundle.json")).unwrap()).unwrap();
    assert_eq!(bundle["model"]["manifest"]["kind"], "fusion");
    assert_eq!(bundle["model"]["parts"].as_array().unwrap().len(), 2);
    assert_eq!(bundle["head"]["dim"], 8, "4 + 4 features");
    // Both feature scalings, each with the five part weightings, tried by the cross-validation;
    // the one reported is the one with the lowest log loss.
    let cv = &fit["cv"];
    let tried = cv["candidates"].as_array().unwrap();
    assert_eq!(tried.len(), 10, "{cv}");
    let best = tried
        .iter()
        .min_by(|a, b| {
            a["log_loss"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["log_loss"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(cv["scaling"], best["scaling"], "{cv}");
    assert_eq!(cv["part_weights"], best["part_weights"], "{cv}");

    let eval = ok(
        &dir,
        &m,
        &["eval", "--bundle", "bundle", "other", "--threads", "1"],
    );
    assert_eq!(eval["accuracy"], 1.0, "{eval}");
    let pred = ok(
        &dir,
        &m,
        &["predict", "--bundle", "bundle", "new", "--threads", "1"],
    );
    assert_eq!(pred[0]["label"], "red", "{pred}");

    // A manifest of kind `fusion` with the same parts is the same model, by another name.
    let manifest = "name = \"ab\"\nkind = \"fusion\"\nparts = [\"a\", \"b\"]\n";
    let m = models(&dir, &[("ab", manifest)]);
    let listed = ok(&dir, &m, &["models"]);
    let ab = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ab")
        .unwrap();
    assert_eq!(ab["feature_dim"], 8);
    assert_eq!(ab["available"], true);
    let x = ok(
        &dir,
        &m,
        &["extract", "data", "--model", "ab", "--threads", "1"],
    );
    assert_eq!(x["backbone_runs"], 0, "the parts' features are shared: {x}");
    // Bench handles it like any model.
    let bench = ok(
        &dir,
        &m,
        &[
            "bench",
            "--model",
            "ab",
            "--batch",
            "1,2",
            "--seconds",
            "0.05",
            "--threads",
            "1",
        ],
    );
    assert_eq!(bench["results"].as_array().unwrap().len(), 2, "{bench}");
}

#[test]
fn bad_fusions_are_clear_errors() {
    let dir = Dir::new();
    let m = models(&dir, &[]);
    data(&dir, "data", 2, 0);
    let err = fails(&dir, &m, &["extract", "data", "--model", "a+nope"]);
    assert!(
        err.contains("unknown model `nope`") && err.contains("known models: a, b, face"),
        "{err}"
    );
    let err = fails(&dir, &m, &["extract", "data", "--model", "a+face"]);
    assert!(
        err.contains("face model `face`") && err.contains("only whole-image models"),
        "{err}"
    );
    let err = fails(&dir, &m, &["extract", "data", "--model", "a+a"]);
    assert!(err.contains("names `a` twice"), "{err}");
    // Manifests: an unknown part names the manifest; one part is not a fusion.
    let bad = models(
        &dir,
        &[(
            "bad",
            "name = \"bad\"\nkind = \"fusion\"\nparts = [\"a\", \"ghost\"]\n",
        )],
    );
    let err = fails(&dir, &bad, &["models"]);
    assert!(
        err.contains("unknown model `ghost`") && err.contains("bad.toml"),
        "{err}"
    );
    std::fs::remove_file(dir.path("models/bad.toml")).unwrap();
    let one = models(
        &dir,
        &[(
            "one",
            "name = \"one\"\nkind = \"fusion\"\nparts = [\"a\"]\n",
        )],
    );
    let err = fails(&dir, &one, &["models"]);
    assert!(err.contains("at least two `parts`"), "{err}");
    std::fs::remove_file(dir.path("models/one.toml")).unwrap();
    let nested = models(
        &dir,
        &[
            (
                "ab",
                "name = \"ab\"\nkind = \"fusion\"\nparts = [\"a\", \"b\"]\n",
            ),
            (
                "nest",
                "name = \"nest\"\nkind = \"fusion\"\nparts = [\"ab\", \"a\"]\n",
            ),
        ],
    );
    let err = fails(&dir, &nested, &["models"]);
    assert!(err.contains("itself fused"), "{err}");
}

#[test]
fn a_bundle_of_a_fusion_refuses_a_changed_part() {
    require_runtime();
    let dir = Dir::new();
    let m = models(&dir, &[]);
    data(&dir, "data", 4, 0);
    ok(
        &dir,
        &m,
        &[
            "fit",
            "data",
            "--model",
            "a+b",
            "--val-per-class",
            "1",
            "--out",
            "bundle",
            "--threads",
            "1",
        ],
    );
    // b's preprocessing changes: the fusion's features are not the ones the head learnt.
    let text = std::fs::read_to_string(dir.path("models/b.toml")).unwrap();
    std::fs::write(
        dir.path("models/b.toml"),
        text.replace("mean = [0.5, 0.5, 0.5]", "mean = [0.25, 0.5, 0.5]"),
    )
    .unwrap();
    dir.write("new/r.png", &png(&tinted(RED, 99)));
    let err = fails(&dir, &m, &["predict", "--bundle", "bundle", "new"]);
    assert!(err.contains("a+b") && err.contains("[preprocess]"), "{err}");
}

// ---------------------------------------------------------------- the real default

#[test]
fn fit_without_model_uses_the_default_fusion() {
    require_runtime();
    require_model_file("xception.onnx");
    require_model_file("mobilenetv2.onnx");
    let dir = Dir::new();
    data(&dir, "data", 3, 0);
    let (json, code, err) = dir.json(&[
        "fit",
        "data",
        "--val-per-class",
        "1",
        "--out",
        "bundle",
        "--no-group",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["model"], "xception+mobilenetv2", "{json}");
    let (pred, code, err) = dir.json(&["predict", "--bundle", "bundle", "data/red/000.png"]);
    assert_eq!(code, 0, "{err}");
    let p = pred[0]["probabilities"].as_object().expect("probabilities");
    assert_eq!(p.len(), 2, "{pred}");
}

//! Issue 12: `--precision int8|fp32` (the int8 graphs the setup quantises), `--device cuda`
//! without a GPU, and image files whose names are not UTF-8.
//!
//! The command-line tests run a copy of the tiny fixture model whose `[int8]` table names another
//! tiny graph (the same network with a different `doc_string`, so another sha256): what they check
//! is which graph runs, how its features are cached and what a bundle records. The real int8
//! graphs are checked against fp32 on registry photos at the end.
use std::path::{Path, PathBuf};

use qcyn::backbone::SessionOptions;
use qcyn::models::{Model, Precision};
use qcyn::pipeline::Pipeline;
use serde_json::Value;

use crate::util::*;

/// A models folder with `tiny` (fp32 + int8 graphs) and `plain` (fp32 only); `int8_sha` is what
/// `tiny`'s `[int8]` table pins (`None`: the int8 graph's real sha256).
fn models(dir: &Dir, int8_sha: Option<&str>) -> String {
    let fixtures = project().join("tests/fixtures/models");
    let folder = dir.path("models");
    std::fs::create_dir_all(&folder).unwrap();
    let tiny = std::fs::read(fixtures.join("tiny.onnx")).unwrap();
    std::fs::write(folder.join("tiny.onnx"), &tiny).unwrap();
    // ModelProto field 6 (doc_string), appended: still a valid ONNX file, another sha256.
    let mut int8 = tiny.clone();
    int8.extend_from_slice(&[0x32, 4]);
    int8.extend_from_slice(b"int8");
    std::fs::write(folder.join("tiny-int8.onnx"), &int8).unwrap();
    let sha = int8_sha.map_or_else(|| sha256_hex(&int8), str::to_string);
    let text = std::fs::read_to_string(fixtures.join("tiny.toml")).unwrap();
    let plain = text.replace("name = \"tiny\"", "name = \"plain\"");
    assert!(plain.contains("name = \"plain\""), "the fixture changed");
    std::fs::write(folder.join("plain.toml"), plain).unwrap();
    let with_int8 = text.replace(
        "\n[source]",
        &format!(
            "\n[int8]\nfile = \"tiny-int8.onnx\"\nsha256 = \"{sha}\"\nmin_cosine = 0.9\n\n[source]"
        ),
    );
    assert!(with_int8.contains("[int8]"), "the fixture changed");
    std::fs::write(folder.join("tiny.toml"), with_int8).unwrap();
    folder.display().to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A two-class dataset of distinct small PNGs.
fn data(dir: &Dir) -> PathBuf {
    make_dataset(dir, "data", &["a", "b"], 6)
}

/// `qcyn --models-dir M args… --json`: (json, exit code, stderr); never a panic.
fn q(dir: &Dir, models: &str, args: &[&str]) -> (Value, i32, String) {
    let mut all = vec!["--models-dir", models];
    all.extend_from_slice(args);
    let out = dir.qcyn().args(&all).arg("--json").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!err.contains("panicked"), "{err}");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (json, out.status.code().unwrap_or(-1), err)
}

fn ok(dir: &Dir, models: &str, args: &[&str]) -> Value {
    let (json, code, err) = q(dir, models, args);
    assert_eq!(code, 0, "qcyn {args:?}: {err}");
    json
}

fn fails(dir: &Dir, models: &str, args: &[&str]) -> String {
    let (_, code, err) = q(dir, models, args);
    assert_eq!(code, 1, "qcyn {args:?} should fail with exit code 1: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn int8_features_are_cached_apart_from_fp32_ones() {
    let dir = Dir::new();
    let m = models(&dir, None);
    data(&dir);
    let ex = |p: &str| {
        ok(
            &dir,
            &m,
            &["extract", "data", "--model", "tiny", "--precision", p],
        )
    };
    let fp32 = ex("fp32");
    assert_eq!(fp32["extracted"], 12, "{fp32}");
    let int8 = ex("int8");
    assert_eq!(
        int8["extracted"], 12,
        "int8 does not reuse fp32 features: {int8}"
    );
    assert_eq!(int8["cached"], 0, "{int8}");
    let (a, b) = (
        fp32["cache_dir"].as_str().unwrap(),
        int8["cache_dir"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(b.contains("tiny-int8-"), "{b}");
    // Each precision keeps its own features; the default is fp32.
    assert_eq!(ex("int8")["cached"], 12);
    let default = ok(&dir, &m, &["extract", "data", "--model", "tiny"]);
    assert_eq!(default["cached"], 12, "{default}");
    assert_eq!(default["cache_dir"], fp32["cache_dir"]);
}

#[test]
fn a_bundle_records_its_precision_and_predicts_with_it() {
    let dir = Dir::new();
    let m = models(&dir, None);
    data(&dir);
    dir.write("new/x.png", &png(&pattern(20, 20, 3)));
    let fit = |p: &str, out: &str| {
        ok(
            &dir,
            &m,
            &[
                "fit",
                "data",
                "--model",
                "tiny",
                "--precision",
                p,
                "--out",
                out,
                "--no-group",
                "--threads",
                "1",
            ],
        )
    };
    fit("int8", "b8");
    fit("fp32", "b32");
    let bundle = |p: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.path(p).join("bundle.json")).unwrap()).unwrap()
    };
    assert_eq!(bundle("b8")["model"]["precision"], "int8");
    assert_eq!(bundle("b32")["model"]["precision"], "fp32");
    assert_ne!(
        bundle("b8")["model"]["sha256"],
        bundle("b32")["model"]["sha256"]
    );
    // predict, eval: the bundle's precision unless asked otherwise, which is refused.
    for b in ["b8", "b32"] {
        let out = ok(&dir, &m, &["predict", "--bundle", b, "new/x.png"]);
        assert!(out[0]["label"].is_string(), "{out}");
    }
    ok(
        &dir,
        &m,
        &[
            "predict",
            "--bundle",
            "b8",
            "--precision",
            "int8",
            "new/x.png",
        ],
    );
    let err = fails(
        &dir,
        &m,
        &[
            "predict",
            "--bundle",
            "b8",
            "--precision",
            "fp32",
            "new/x.png",
        ],
    );
    assert!(
        err.contains("int8 features") && err.contains("--precision int8"),
        "{err}"
    );
    let err = fails(
        &dir,
        &m,
        &["eval", "--bundle", "b32", "--precision", "int8", "data"],
    );
    assert!(err.contains("fp32 features"), "{err}");
}

#[test]
fn int8_for_a_model_without_an_int8_graph_names_those_that_have_one() {
    let dir = Dir::new();
    let m = models(&dir, None);
    data(&dir);
    for cmd in [
        &["extract", "data"][..],
        &["fit", "data", "--out", "b"],
        &["bench", "--seconds", "0"],
    ] {
        let mut args = cmd.to_vec();
        args.extend_from_slice(&["--model", "plain", "--precision", "int8"]);
        let err = fails(&dir, &m, &args);
        assert!(
            err.contains("`plain` has no int8 graph") && err.contains("with an int8 graph: tiny"),
            "{args:?}: {err}"
        );
    }
    // The project's models: face models and Xception71 have none; the others are named.
    let real = project().join("models").display().to_string();
    for model in ["face", "xception71"] {
        let err = fails(
            &dir,
            &real,
            &["extract", "data", "--model", model, "--precision", "int8"],
        );
        assert!(
            err.contains("no int8 graph")
                && err.contains("mobilenetv2")
                && err.contains("xception"),
            "{model}: {err}"
        );
    }
}

#[test]
fn an_int8_graph_that_does_not_match_its_sha256_is_refused_with_the_fix() {
    let dir = Dir::new();
    let m = models(&dir, Some(&"1".repeat(64)));
    data(&dir);
    let err = fails(
        &dir,
        &m,
        &[
            "extract",
            "data",
            "--model",
            "tiny",
            "--precision",
            "int8",
            "--no-cache",
        ],
    );
    assert!(
        err.contains("int8 graph of `tiny`")
            && err.contains("sha256")
            && err.contains("scripts/setup"),
        "{err}"
    );
    // fp32 still runs.
    ok(
        &dir,
        &m,
        &["extract", "data", "--model", "tiny", "--no-cache"],
    );
}

#[test]
fn bench_json_reports_precision_and_provider() {
    let dir = Dir::new();
    let m = models(&dir, None);
    for p in ["fp32", "int8"] {
        let out = ok(
            &dir,
            &m,
            &[
                "bench",
                "--model",
                "tiny",
                "--precision",
                p,
                "--batch",
                "1,4",
                "--seconds",
                "0",
                "--quiet",
            ],
        );
        assert_eq!(out["precision"], p, "{out}");
        assert_eq!(out["provider"], "CPUExecutionProvider", "{out}");
        assert_eq!(out["results"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_naming_the_setup() {
    let dir = Dir::new();
    let m = models(&dir, None);
    data(&dir);
    if Path::new("/proc/driver/nvidia/version").exists() && qcyn::runtime::gpu_dylib().is_file() {
        eprintln!("note: this machine has an NVIDIA driver and runtime/gpu: not a no-GPU machine");
        return;
    }
    for args in [
        &["bench", "--model", "tiny", "--seconds", "0"][..],
        &["extract", "data", "--model", "tiny", "--no-cache"],
    ] {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--device", "cuda"]);
        let err = fails(&dir, &m, &all);
        assert!(
            err.contains("CUDA") && err.contains("setup --gpu") && err.contains("--device cpu"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_photo_whose_name_is_not_utf8_is_read_and_named_exactly() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = Dir::new();
    let m = models(&dir, None);
    data(&dir);
    // "café.png" in Latin-1, as a zip from another system leaves it.
    let name = OsStr::from_bytes(b"caf\xe9 50%.png");
    let path = dir.path("data/a").join(name);
    std::fs::write(&path, png(&pattern(22, 22, 99))).unwrap();
    assert!(path.to_str().is_none());

    let out = ok(&dir, &m, &["extract", "data", "--model", "tiny"]);
    assert_eq!(out["images"], 13, "{out}");
    assert_eq!(out["extracted"], 13, "{out}");
    assert_eq!(out["skipped"].as_array().unwrap().len(), 0, "{out}");
    // Keyed by content: a second run finds it in the cache.
    let again = ok(&dir, &m, &["extract", "data", "--model", "tiny"]);
    assert_eq!(again["cached"], 13, "{again}");

    // fit writes it escaped in the split; predict prints it lossily and gives its bytes escaped.
    ok(
        &dir,
        &m,
        &[
            "fit",
            "data",
            "--model",
            "tiny",
            "--out",
            "b",
            "--no-group",
            "--threads",
            "1",
        ],
    );
    let split = std::fs::read_to_string(dir.path("b/split.json")).unwrap();
    assert!(split.contains("a/caf%E9 50%25.png"), "{split}");
    let preds = ok(&dir, &m, &["predict", "--bundle", "b", "data/a"]);
    let entry = preds
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path_escaped"].is_string())
        .unwrap_or_else(|| panic!("{preds}"));
    assert!(entry["path_escaped"]
        .as_str()
        .unwrap()
        .ends_with("a/caf%E9 50%25.png"));
    assert!(entry["path"]
        .as_str()
        .unwrap()
        .ends_with("caf\u{FFFD} 50%.png"));
    assert!(entry["label"].is_string() && entry.get("error").is_none());
    let text = dir
        .qcyn()
        .args(["--models-dir", &m, "predict", "--bundle", "b", "data/a"])
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&text.stdout).contains("caf\u{FFFD} 50%.png"));
    assert_eq!(
        qcyn::dataset::unescape_path(entry["path_escaped"].as_str().unwrap())
            .unwrap()
            .file_name()
            .unwrap(),
        name
    );

    // The tutorial's list files hold it escaped too, and read back to the same file.
    ok(
        &dir,
        &m,
        &[
            "split",
            "data",
            "--model",
            "tiny",
            "--no-group",
            "--out",
            "split.json",
            "--write-lists",
            "lists",
        ],
    );
    let fit = ok(
        &dir,
        &m,
        &[
            "fit",
            "--lists",
            "lists",
            "--base",
            "data",
            "--model",
            "tiny",
            "--out",
            "b2",
            "--threads",
            "1",
        ],
    );
    assert!(fit.is_object(), "{fit}");
}

// ----------------------------------------------------------- the real int8 graphs

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

/// Features of `model` at both precisions on the registry photos of `.qcyn/testdata/imagenet`
/// agree (cosine), as the setup checked them on its own photos.
fn int8_agrees_with_fp32(name: &str, min: f32) {
    let photos = project().join(".qcyn/testdata/imagenet");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&photos)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/fetch_reference_images",
                photos.display()
            )
        })
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "run scripts/fetch_reference_images");
    let bytes: Vec<Vec<u8>> = files
        .iter()
        .take(6)
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
    let registry = qcyn::models::Registry::load(&project().join("models")).unwrap();
    let model: Model = registry.get(name).unwrap();
    require_model_file(&format!("{name}-int8.onnx"));
    let mut feats = Vec::new();
    for p in [Precision::Fp32, Precision::Int8] {
        let m = registry.with_precision(model.clone(), p).unwrap();
        let mut pipe = Pipeline::open(&ort_env(), &m, SessionOptions::default()).unwrap();
        assert_eq!(pipe.identity.model.ends_with("-int8"), p == Precision::Int8);
        let out = pipe.embed(&refs).unwrap();
        feats.push(
            out.into_iter()
                .map(|e| e.unwrap().remove(0).vector)
                .collect::<Vec<_>>(),
        );
    }
    for (i, (a, b)) in feats[0].iter().zip(&feats[1]).enumerate() {
        let c = cosine(a, b);
        assert!(
            c >= min,
            "{name} {}: fp32/int8 cosine {c}",
            files[i].display()
        );
    }
}

#[test]
fn mobilenetv2_int8_features_agree_with_fp32_on_registry_photos() {
    int8_agrees_with_fp32("mobilenetv2", 0.9);
}

#[test]
fn xception_int8_features_agree_with_fp32_on_registry_photos() {
    int8_agrees_with_fp32("xception", 0.88);
}

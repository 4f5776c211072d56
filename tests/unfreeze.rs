//! Issue 10: `fit --unfreeze N`, the unfrozen path. MobileNetV2's prefix/tail graphs (built and
//! pinned by `scripts/setup`) on small generated images: the Rust tail against ONNX Runtime's run
//! of the written graph, the fit/predict contract, determinism and a second run without the
//! backbone, resume after kill -9, and bad input.
use std::path::Path;
use std::time::{Duration, Instant};

use qcyn::backbone::SessionOptions;
use qcyn::unfreeze::graph::TailGraph;
use qcyn::unfreeze::views::TailSession;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::util::*;

/// Two classes of 7 distinct images each (different colours and patterns).
fn data(dir: &Dir) -> std::path::PathBuf {
    for i in 0..7u32 {
        let a = pattern(40 + i, 36, i * 3);
        let mut b = pattern(38, 40 + i, 100 + i * 5);
        for p in b.pixels_mut() {
            p.0 = [p.0[2], 255 - p.0[1] / 2, p.0[0] / 3];
        }
        dir.write(&format!("data/ants/a{i}.png"), &png(&a));
        dir.write(&format!("data/bees/b{i}.png"), &png(&b));
    }
    dir.path("data")
}

/// `fit data --model mobilenetv2 --val-per-class 2 --no-group --out OUT extra…`.
fn fit_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        "data",
        "--model",
        "mobilenetv2",
        "--val-per-class",
        "2",
        "--no-group",
        // The head the tail starts from: per-feature scaling, with which a few epochs on these
        // 14 tiny images beat the pretrained block (with one scale per backbone they may not,
        // and the tail then stays the pretrained one, whatever the settings).
        "--scaling",
        "feature",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    args
}

fn fit(dir: &Dir, out: &str, extra: &[&str]) -> (Value, i32, String) {
    let args = fit_args(out, extra);
    let r = dir.json(&args);
    assert!(!r.2.contains("panicked"), "{}", r.2);
    r
}

fn bundle(dir: &Dir, out: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.path(out).join("bundle.json")).unwrap()).unwrap()
}

/// The Rust forward pass of both MobileNetV2 tails (1×1 block; inverted residual with the
/// depthwise 3×3 and its zero padding) agrees with ONNX Runtime's run of the graph written with
/// changed weights, to 1e-4.
#[test]
fn rust_tail_matches_onnx_runtime_after_writing_weights() {
    require_runtime();
    let env = ort_env();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for (file, map) in [
        ("mobilenetv2-tail1.onnx", [320, 7, 7]),
        ("mobilenetv2-tail2.onnx", [160, 7, 7]),
    ] {
        let path = require_model_file(file);
        let graph = TailGraph::read(std::fs::read(&path).unwrap(), map).unwrap();
        let mut tail = graph.tail.clone();
        for p in tail.params_mut() {
            for v in p.iter_mut() {
                *v += rng.gen_range(-0.01f32..0.01);
            }
        }
        assert_ne!(tail, graph.tail, "weights changed");
        let written = graph.write(&tail).unwrap();
        let out = Dir::new();
        let onnx = out.write("tail.onnx", &written);
        let len: usize = map.iter().product();
        let maps: Vec<f32> = (0..3 * len).map(|_| rng.gen_range(0.0f32..3.0)).collect();
        let mut session = TailSession::open(
            &env,
            &onnx,
            len,
            1280,
            "features",
            SessionOptions::default(),
        )
        .unwrap();
        let ort = session.run(&maps, 3).unwrap();
        let views: Vec<&[f32]> = maps.chunks(len).collect();
        let rust = tail.features(tail.batch(&views), 3);
        let diff = rust
            .iter()
            .zip(&ort)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-4,
            "{file}: Rust and ONNX Runtime differ by {diff}"
        );
        // And the untouched graph gives other features: the weights were really written.
        let mut plain = TailSession::open(
            &env,
            &path,
            len,
            1280,
            "features",
            SessionOptions::default(),
        )
        .unwrap();
        let before = plain.run(&maps, 3).unwrap();
        assert!(before.iter().zip(&ort).any(|(a, b)| (a - b).abs() > 1e-3));
    }
}

/// The contract: `fit --unfreeze 1 --json` reports `unfreeze`, `epochs_run`, `best_epoch`,
/// `train_seconds`; `predict --bundle` works; the same fit again runs no backbone and trains the
/// same tail (deterministic for a seed); a stale tail is removed.
#[test]
fn fit_unfreeze_bundle_predicts_and_a_second_fit_runs_no_backbone() {
    require_runtime();
    let dir = Dir::new();
    data(&dir);
    let (r, code, err) = fit(&dir, "b", &["--unfreeze", "1", "--epochs", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["unfreeze"], 1);
    assert_eq!(r["model"], "mobilenetv2");
    let epochs = r["epochs_run"].as_u64().unwrap();
    assert!((1..=3).contains(&epochs), "{r}");
    assert!(r["best_epoch"].as_u64().unwrap() <= epochs);
    assert!(r["train_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(r["n_val"], 4);
    assert_eq!(
        r["backbone_runs"], 14,
        "each image's maps once (both views in one vector)"
    );
    let ft = &r["fine_tuning"];
    assert!(ft["ort_max_abs_diff"].as_f64().unwrap() <= 1e-4, "{ft}");
    assert_eq!(ft["map_cache_bytes_per_image"], 2 * 2 * 320 * 49);
    let b = bundle(&dir, "b");
    let tail_file = dir.path("b").join(b["tail"]["file"].as_str().unwrap());
    assert!(tail_file.is_file());
    assert_eq!(b["tail"]["blocks"], 1);

    let page = std::fs::read_to_string(dir.path("b/report.html")).unwrap();
    assert!(
        page.contains("last 1 block(s) trained (--unfreeze)"),
        "the HTML report says how the tail was trained"
    );

    let (p, code, err) = dir.json(&["predict", "--bundle", "b", "data"]);
    assert_eq!(code, 0, "{err}");
    let preds = p.as_array().unwrap();
    assert_eq!(preds.len(), 14);
    for e in preds {
        let probs = e["probabilities"].as_object().unwrap();
        let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4 && probs.contains_key(e["label"].as_str().unwrap()));
    }

    let (bench, code, err) = dir.json(&[
        "bench",
        "--bundle",
        "b",
        "--batch",
        "2",
        "--seconds",
        "0.05",
        "--warmup",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(bench["model"], "mobilenetv2");
    assert!(
        bench["notes"].to_string().contains("trained tail"),
        "{bench}"
    );
    assert!(
        bench["results"][0]["images_per_s"].as_f64().unwrap() > 0.0,
        "{bench}"
    );

    let (again, code, err) = fit(&dir, "b", &["--unfreeze", "1", "--epochs", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        again["backbone_runs"], 0,
        "maps and tail features all cached"
    );
    assert_eq!(bundle(&dir, "b")["tail"], b["tail"], "same seed, same tail");
    assert_eq!(again["accuracy"], r["accuracy"]);

    let (other, code, err) = fit(
        &dir,
        "b",
        &["--unfreeze", "1", "--epochs", "2", "--lr", "0.001"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(other["backbone_runs"], 0);
    let newer = bundle(&dir, "b");
    assert_ne!(newer["tail"]["sha256"], b["tail"]["sha256"]);
    assert!(
        !tail_file.exists(),
        "the earlier fit's tail is removed once the new bundle is written"
    );
}

/// A bundle whose tail file is missing or altered is refused, naming the file; `--unfreeze` on
/// a model without a cut point, with too many blocks, on the face model, and an exploding
/// learning rate (NaN: stops, keeps the best weights, says why).
#[test]
fn unfreeze_bad_input() {
    require_runtime();
    let dir = Dir::new();
    data(&dir);
    let (r, code, err) = fit(
        &dir,
        "b",
        &["--unfreeze", "1", "--epochs", "2", "--lr", "1e38"],
    );
    assert_eq!(code, 0, "{err}");
    let reason = r["fine_tuning"]["stop_reason"].as_str().unwrap();
    assert!(reason.contains("loss became"), "{reason}");
    assert_eq!(r["best_epoch"], 0, "the pretrained tail is kept");
    assert!(r["accuracy"].as_f64().unwrap().is_finite());

    let b = bundle(&dir, "b");
    let tail = dir.path("b").join(b["tail"]["file"].as_str().unwrap());
    let mut bytes = std::fs::read(&tail).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 1;
    std::fs::write(&tail, &bytes).unwrap();
    let out = dir.run(&["predict", "--bundle", "b", "data"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("sha256") && err.contains(&*tail.file_name().unwrap().to_string_lossy()),
        "{err}"
    );
    std::fs::remove_file(&tail).unwrap();
    let out = dir.run(&["eval", "--bundle", "b", "data"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("trained tail file not found"), "{err}");
    assert!(!err.contains("panicked"));

    let out = dir.run(&[
        "fit",
        "data",
        "--model",
        "mobilenetv2",
        "--out",
        "x",
        "--resume",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--unfreeze is not given"), "{err}");
    for (args, want) in [
        (
            vec!["--model", "xception", "--unfreeze", "1"],
            "has no cut point",
        ),
        (vec!["--model", "mobilenetv2", "--unfreeze", "3"], "1 or 2"),
        (vec!["--model", "face", "--unfreeze", "1"], "not supported"),
    ] {
        let mut all = vec!["fit", "data", "--out", "x"];
        all.extend_from_slice(&args);
        let out = dir.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want) && err.contains("mobilenetv2 (--unfreeze 1 or 2)"),
            "{args:?}: {err}"
        );
        assert!(!dir.path("x").join("bundle.json").exists());
    }
}

/// kill -9 during training leaves the earlier bundle as it was; `--resume` continues from the
/// checkpoint and ends with the same tail as a run that was never interrupted.
#[test]
fn kill_during_training_keeps_the_bundle_and_resume_continues() {
    require_runtime();
    let dir = Dir::new();
    data(&dir);
    let (_, code, err) = fit(&dir, "b", &["--unfreeze", "1", "--epochs", "1"]);
    assert_eq!(code, 0, "{err}");
    let before = std::fs::read(dir.path("b/bundle.json")).unwrap();
    let long = [
        "--unfreeze",
        "1",
        "--epochs",
        "150",
        "--eval-interval",
        "1",
        "--patience",
        "1000",
    ];
    let mut args = fit_args("b", &long);
    args.push("-q");
    let mut child = dir
        .qcyn()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = dir.path("b").join(qcyn::unfreeze::CHECKPOINT_FILE);
    let start = Instant::now();
    while !ckpt.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(ckpt.exists(), "killed while training, after a checkpoint");
    assert_eq!(
        std::fs::read(dir.path("b/bundle.json")).unwrap(),
        before,
        "the earlier bundle is untouched"
    );
    let (_, code, err) = dir.json(&["predict", "--bundle", "b", "data"]);
    assert_eq!(code, 0, "the earlier bundle still predicts: {err}");

    let mut resumed = long.to_vec();
    resumed.push("--resume");
    let (r, code, err) = fit(&dir, "b", &resumed);
    assert_eq!(code, 0, "{err}");
    let from = r["fine_tuning"]["resumed_from_step"]
        .as_u64()
        .expect("resumed");
    assert!(from > 0 && from < 150, "{from}");
    assert!(
        !ckpt.exists(),
        "the checkpoint is removed once the bundle is written"
    );
    let resumed_tail = bundle(&dir, "b")["tail"].clone();
    let (_, code, err) = fit(&dir, "c", &long);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        bundle(&dir, "c")["tail"]["sha256"],
        resumed_tail["sha256"],
        "resume = an uninterrupted run"
    );
    assert!(Path::new(&dir.path("c"))
        .join(resumed_tail["file"].as_str().unwrap())
        .is_file());
}

/// `compare --unfreeze 1` adds `mobilenetv2+unfreeze1` recipes, the tail trained on each
/// repeat's training part; a model without a cut point is compared frozen only, with a note.
#[test]
fn compare_includes_the_fine_tuned_recipe() {
    require_runtime();
    let dir = Dir::new();
    data(&dir);
    let (r, code, err) = dir.json(&[
        "compare",
        "data",
        "--models",
        "mobilenetv2,efficientnet_lite0",
        "--heads",
        "softmax,centroid",
        "--repeats",
        "2",
        "--no-group",
        "--unfreeze",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("not fine-tuned") && err.contains("efficientnet_lite0"),
        "{err}"
    );
    let rows = r["rows"].as_array().unwrap();
    let tuned: Vec<&Value> = rows
        .iter()
        .filter(|row| row["model"] == "mobilenetv2+unfreeze1")
        .collect();
    assert!(
        tuned.len() >= 2,
        "softmax and centroid on the fine-tuned features: {r}"
    );
    for row in &tuned {
        assert_eq!(row["accuracy_per_repeat"].as_array().unwrap().len(), 2);
        let acc = row["accuracy_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    assert!(rows.iter().any(|row| row["model"] == "mobilenetv2"));
    assert!(!rows
        .iter()
        .any(|row| row["model"] == "efficientnet_lite0+unfreeze1"));
    let uses = r["models"].as_array().unwrap();
    let maps = uses
        .iter()
        .find(|m| m["model"] == "mobilenetv2+unfreeze1")
        .expect("listed");
    assert_eq!(
        maps["backbone_runs"], 14,
        "each image's maps once, for every repeat"
    );
}

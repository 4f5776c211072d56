//! Issue 11, `qcyn export`: one ONNX file from the normalised image tensor to class
//! probabilities, checked with Python's onnxruntime against `qcyn predict`.
use std::process::Command;

use serde_json::Value;

use crate::util::*;

fn q(dir: &Dir, args: &[&str]) -> (Value, i32, String) {
    q_fixture(dir, args)
}

/// A folder with the dataset and a bundle `b` fitted on it.
fn fitted() -> Dir {
    tiny_fitted("2")
}

#[test]
fn exported_graph_gives_predicts_probabilities_in_onnxruntime() {
    require_runtime();
    let dir = fitted();
    let (exp, code, err) = q(&dir, &["export", "--bundle", "b", "--out", "m.onnx"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(exp["input"], "image float32 [N, 3, 8, 8]", "{exp}");
    assert_eq!(exp["output"], "probabilities float32 [N, 2]", "{exp}");
    let images = ["data/red/p1.png", "data/blue/p3.png", "data/red/p9.png"];
    let mut args = vec!["predict", "--bundle", "b"];
    args.extend_from_slice(&images);
    let (pred, code, err) = q(&dir, &args);
    assert_eq!(code, 0, "{err}");

    let script = r#"
import json, sys
import numpy as np, onnxruntime as ort
from PIL import Image
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = s.get_modelmeta().custom_metadata_map
x = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255.0 for p in sys.argv[2:]])
(p,) = s.run(["probabilities"], {"image": x.astype(np.float32)})
print(json.dumps({"p": p.tolist(), "classes": json.loads(meta["classes"]),
                  "input_size": json.loads(meta["input_size"]), "mean": json.loads(meta["mean"]),
                  "std": json.loads(meta["std"])}))
"#;
    let py = project().join(".qcyn/venv/bin/python");
    assert!(
        py.is_file(),
        "run scripts/setup first: {} is missing",
        py.display()
    );
    let out = Command::new(py)
        .current_dir(dir.root())
        .arg("-c")
        .arg(script)
        .arg("m.onnx")
        .args(images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["classes"], serde_json::json!(["blue", "red"]), "{got}");
    assert_eq!(got["input_size"], serde_json::json!([8, 8]));
    let mean: Vec<f64> = got["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(mean, [0.0, 0.0, 0.0]);
    let preds = pred.as_array().unwrap();
    let mut worst = 0f64;
    for (i, p) in preds.iter().enumerate() {
        for (j, class) in ["blue", "red"].iter().enumerate() {
            let want = p["probabilities"][class].as_f64().unwrap();
            let have = got["p"][i][j].as_f64().unwrap();
            worst = worst.max((want - have).abs());
        }
    }
    assert!(worst <= 1e-5, "max |difference| {worst}: {pred} vs {got}");
    // The two classes are told apart (the graph is not constant).
    let spread = (got["p"][0][0].as_f64().unwrap() - got["p"][1][0].as_f64().unwrap()).abs();
    assert!(spread > 1e-3, "{got}");
}

#[test]
fn export_refuses_a_bundle_whose_model_changed_and_a_missing_bundle() {
    require_runtime();
    let dir = fitted();
    let path = dir.path("b/bundle.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut bundle: Value = serde_json::from_str(&text).unwrap();
    bundle["model"]["sha256"] = Value::String("0".repeat(64));
    std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let m = fixture_models();
    let fails = |bundle: &str| {
        let out = dir.run(&[
            "--models-dir",
            &m,
            "export",
            "--bundle",
            bundle,
            "--out",
            "m.onnx",
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!err.contains("panicked"), "{err}");
        (out.status.code(), err)
    };
    let (code, err) = fails("b");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("sha256") && err.contains("hint"), "{err}");
    assert!(!dir.path("m.onnx").exists(), "nothing written");
    let (code, err) = fails("nowhere");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nowhere"), "{err}");
}

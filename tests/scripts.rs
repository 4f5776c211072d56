//! The model scripts, run offline: their bad-input paths (scripts/test_scripts.py) and the
//! online Xception71 export on a tiny stand-in, whose output qcyn must accept as the default.
use std::process::Command;

use crate::util::*;

/// The venv's Python that scripts/setup made.
fn python() -> std::path::PathBuf {
    let p = project().join(".qcyn/venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup before the tests",
        p.display()
    );
    p
}

#[test]
fn model_scripts_refuse_bad_archives_parity_off_and_python_39() {
    let out = Command::new(python())
        .arg(project().join("scripts/test_scripts.py"))
        .output()
        .expect("python runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/test_scripts.py failed:\n{err}"
    );
    assert!(err.contains("OK"), "{err}");
}

#[test]
fn export_xception71_self_test_writes_a_manifest_qcyn_makes_the_default() {
    let dir = Dir::new();
    let models = dir.path("models");
    let out = Command::new(python())
        .arg(project().join("scripts/export_xception71.py"))
        .arg("--self-test")
        .arg(&models)
        .output()
        .expect("python runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("self-test OK"), "{err}");
    // What an online user's export leaves: qcyn reads it, calls it pretrained, makes it the default.
    let (json, code, err) = dir.json(&["--models-dir", models.to_str().unwrap(), "models"]);
    assert_eq!(code, 0, "{err}");
    let x = &json[0];
    assert_eq!(x["name"], "xception71");
    assert_eq!(x["random_weights"], false);
    assert_eq!(x["available"], true);
    assert_eq!(x["default"], true, "{json}");
    // and its graph runs with the manifest's preprocessing.
    require_runtime();
    dir.write("imgs/x/a.png", &png(&pattern(40, 30, 1)));
    let (json, code, err) = dir.json(&[
        "--models-dir",
        models.to_str().unwrap(),
        "extract",
        "imgs",
        "--model",
        "xception71",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["backbone_runs"], 1);
}

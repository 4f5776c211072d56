//! Issue 11, `qcyn report`: one self-contained HTML page from a bundle and its report.json
//! (written by `fit` too); the worst errors come from report.json's per-image answers, and a
//! report.json written before those existed is still read, with a note.
use serde_json::Value;

use crate::util::*;

/// 8×8 photos and a bundle `b` fitted on them with the tiny fixture model.
fn fitted() -> Dir {
    tiny_fitted("3")
}

fn read_json(dir: &Dir, rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.path(rel)).unwrap()).unwrap()
}

fn assert_self_contained(html: &str) {
    for remote in ["http://", "https://", "//cdn", "<link", "<script src"] {
        assert!(!html.contains(remote), "{remote} in the page");
    }
}

#[test]
fn fit_writes_report_html_and_report_json_lists_every_validation_answer() {
    require_runtime();
    let dir = fitted();
    let report = read_json(&dir, "b/report.json");
    let images = report["validation_images"]
        .as_array()
        .expect("per-image answers");
    assert_eq!(images.len(), report["n_val"].as_u64().unwrap() as usize);
    for v in images {
        assert!(
            std::path::Path::new(v["path"].as_str().unwrap()).is_absolute(),
            "{v}"
        );
        assert!(v["path"].as_str().unwrap().contains("data"), "{v}");
        assert_eq!(v["probabilities"].as_array().unwrap().len(), 2, "{v}");
        assert!(
            ["red", "blue"].contains(&v["true_class"].as_str().unwrap()),
            "{v}"
        );
    }
    // The answers are predict's: the same label for the same image.
    let first = images[0]["path"].as_str().unwrap();
    let (pred, code, err) = q_fixture(&dir, &["predict", "--bundle", "b", first]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        pred[0]["label"], images[0]["predicted"],
        "{pred} vs {}",
        images[0]
    );

    let html = std::fs::read_to_string(dir.path("b/report.html")).expect("fit wrote report.html");
    assert_self_contained(&html);
    for part in [
        "<svg",
        "Confusion matrix",
        "Precision and recall",
        "Bias",
        "Worst errors",
        "Split",
        "Settings",
    ] {
        assert!(html.contains(part), "{part} missing");
    }
}

#[test]
fn report_shows_the_worst_errors_as_inline_thumbnails() {
    require_runtime();
    let dir = fitted();
    // Two right answers made wrong by relabelling them: the report picks its errors from
    // report.json.
    let mut report = read_json(&dir, "b/report.json");
    let images = report["validation_images"].as_array_mut().unwrap();
    let flip = |c: &Value| if c == "red" { "blue" } else { "red" };
    let mut flipped = Vec::new();
    for v in images.iter_mut() {
        if flipped.len() < 2 && v["predicted"] == v["true_class"] {
            v["true_class"] = Value::String(flip(&v["predicted"]).into());
            let p = v["path"].as_str().unwrap();
            flipped.push(p.rsplit('/').next().unwrap().to_string());
        }
    }
    assert_eq!(flipped.len(), 2, "two right answers to flip");
    let wrong = images
        .iter()
        .filter(|v| v["predicted"] != v["true_class"])
        .count();
    std::fs::write(
        dir.path("b/report.json"),
        serde_json::to_vec(&report).unwrap(),
    )
    .unwrap();
    let (out, code, err) = q_fixture(&dir, &["report", "b", "--out", "page"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["errors_shown"], wrong, "{out}");
    let html = std::fs::read_to_string(dir.path("page/report.html")).unwrap();
    assert_self_contained(&html);
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), wrong);
    for name in &flipped {
        assert!(html.contains(name.as_str()), "{name} not shown");
    }
    assert!(
        html.contains(&format!("{wrong} of 6 validation images answered wrong")),
        "{html}"
    );
}

#[test]
fn report_reads_an_older_report_json_with_a_note_and_refuses_a_missing_bundle() {
    require_runtime();
    let dir = fitted();
    let mut report = read_json(&dir, "b/report.json");
    report.as_object_mut().unwrap().remove("validation_images");
    std::fs::write(
        dir.path("b/report.json"),
        serde_json::to_vec(&report).unwrap(),
    )
    .unwrap();
    let m = fixture_models();
    let out = dir.run(&["--models-dir", &m, "report", "b", "--out", "page"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("earlier qcyn") && err.contains("re-run `qcyn fit`"),
        "{err}"
    );
    let html = std::fs::read_to_string(dir.path("page/report.html")).unwrap();
    assert!(
        html.contains("earlier qcyn") && html.contains("<svg"),
        "{html}"
    );

    let out = dir.run(&["report", "nowhere", "--out", "page2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("nowhere") && err.contains("hint:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

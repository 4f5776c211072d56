//! Report: a fit's report as one self-contained HTML page (`qcyn report`, and `qcyn fit` beside
//! its `report.json`). Made from the bundle and the `report.json` beside it: the confusion matrix
//! and per-class precision/recall as inline SVG, the worst validation errors as thumbnails
//! (inlined as base64 JPEG; for face bundles the face that gave the label), the bias note, the
//! split and the settings. Nothing on the page is fetched from anywhere.
//!
//! Like `predict`, the report sits at the end of the data's way: nothing imports it.
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::atomic::write_atomic;
use crate::bundle::{bundle_path, place, Bundle};
use crate::error::{Error, Result};
use crate::models::ModelKind;

mod svg;

/// Worst errors shown, at most.
pub const WORST_ERRORS: usize = 12;
/// Longest side of a thumbnail, pixels.
const THUMB_PX: u32 = 160;

/// What [`write_html`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The page.
    pub path: PathBuf,
    /// Wrong validation answers the page shows as thumbnails.
    pub errors_shown: usize,
    /// What the page could not show, and why (also written on the page).
    pub notes: Vec<String>,
}

/// Writes `report.html` for the bundle at `bundle` (its folder or its JSON file) into the folder
/// `out`.
pub fn write_html(bundle: &Path, out: &Path) -> Result<Written> {
    std::fs::create_dir_all(out).map_err(|e| Error::io("cannot create folder", out, e))?;
    write_to(bundle, &out.join("report.html"))
}

/// Writes the page beside the bundle, as `qcyn fit` does: `report.html` next to `report.json`
/// (`NAME.report.html` for a bundle file `NAME.json`).
pub fn write_beside(bundle: &Path) -> Result<Written> {
    let (dir, stem) = place(&bundle_path(bundle));
    write_to(bundle, &dir.join(format!("{stem}report.html")))
}

fn write_to(bundle: &Path, page: &Path) -> Result<Written> {
    let file = bundle_path(bundle);
    let b = Bundle::load(&file)?;
    let (dir, stem) = place(&file);
    let report_file = dir.join(format!("{stem}report.json"));
    let mut notes = Vec::new();
    let report: Option<Value> = match std::fs::read(&report_file) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                notes.push(format!(
                    "{} is not readable JSON ({e}): the page shows what the bundle holds",
                    report_file.display()
                ));
                None
            }
        },
        Err(_) => {
            notes.push(format!(
                "no {} beside the bundle: the page shows what the bundle holds (no worst errors, no split notes); re-run `qcyn fit` to have it",
                report_file.display()
            ));
            None
        }
    };
    let (html, errors_shown) = render(&b, report.as_ref(), &mut notes);
    write_atomic(page, html.as_bytes())?;
    Ok(Written {
        path: page.to_path_buf(),
        errors_shown,
        notes,
    })
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A wrong validation answer, from `report.json`'s `validation_images`.
struct Wrong {
    path: String,
    true_class: String,
    predicted: Option<String>,
    /// (class, probability), most probable first.
    ranked: Vec<(String, f64)>,
    p_true: f64,
    face: Option<[f64; 4]>,
}

/// The wrong answers, most confidently wrong first (lowest probability of the true class).
fn worst_errors(images: &[Value], classes: &[String]) -> Vec<Wrong> {
    let mut wrong: Vec<Wrong> = images
        .iter()
        .filter_map(|v| {
            let true_class = v.get("true_class")?.as_str()?.to_string();
            let predicted = v.get("predicted").and_then(Value::as_str).map(String::from);
            if predicted.as_deref() == Some(true_class.as_str()) {
                return None;
            }
            let p: Vec<f64> = v
                .get("probabilities")?
                .as_array()?
                .iter()
                .filter_map(Value::as_f64)
                .collect();
            let mut ranked: Vec<(String, f64)> = classes.iter().cloned().zip(p).collect();
            let p_true = ranked
                .iter()
                .find(|(c, _)| *c == true_class)
                .map_or(0.0, |(_, p)| *p);
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            let face = v.get("face").and_then(Value::as_array).and_then(|b| {
                let b: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
                (b.len() == 4).then(|| [b[0], b[1], b[2], b[3]])
            });
            Some(Wrong {
                path: v.get("path")?.as_str()?.to_string(),
                true_class,
                predicted,
                ranked,
                p_true,
                face,
            })
        })
        .collect();
    wrong.sort_by(|a, b| a.p_true.total_cmp(&b.p_true));
    wrong
}

/// A JPEG thumbnail of the image (of the face's box, with a margin, when given), as a data URI.
fn thumbnail(path: &Path, face: Option<[f64; 4]>) -> std::result::Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let img = match face {
        Some([x, y, w, h]) if w > 0.0 && h > 0.0 => {
            // The box is in the photo's pixels: decode every pixel.
            let full = crate::preprocess::decode_rgb(&bytes).map_err(|e| e.to_string())?;
            let m = 0.25 * w.max(h);
            let (x0, y0) = ((x - m).max(0.0) as u32, (y - m).max(0.0) as u32);
            let x1 = ((x + w + m) as u32).min(full.width());
            let y1 = ((y + h + m) as u32).min(full.height());
            if x1 <= x0 || y1 <= y0 {
                full
            } else {
                image::imageops::crop_imm(&full, x0, y0, x1 - x0, y1 - y0).to_image()
            }
        }
        _ => crate::preprocess::decode_rgb_at_least(&bytes, Some(THUMB_PX))
            .map_err(|e| e.to_string())?,
    };
    let scale = f64::from(THUMB_PX) / f64::from(img.width().max(img.height()));
    let small = if scale < 1.0 {
        image::imageops::thumbnail(
            &img,
            ((f64::from(img.width()) * scale).round() as u32).max(1),
            ((f64::from(img.height()) * scale).round() as u32).max(1),
        )
    } else {
        img
    };
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&small)
        .map_err(|e| format!("cannot make a thumbnail: {e}"))?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64(&jpeg.into_inner())
    ))
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
.sub{color:#666}.big{font-size:1.25em}.note{background:#fff6dd;border-left:4px solid #e0b020;padding:.4em .8em;margin:.6em 0}\
.bias{background:#eef3ff;border-left:4px solid #3a6fd8;padding:.5em .8em}table{border-collapse:collapse;margin:.4em 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.92em}th{background:#f4f4f4}\
.grid{display:flex;flex-wrap:wrap;gap:12px}.err{border:1px solid #ddd;border-radius:6px;padding:6px;width:190px;font-size:.85em}\
.err img{display:block;max-width:178px;max-height:178px;margin:0 auto 4px}.err .path{color:#777;word-break:break-all;font-size:.8em}\
.t{color:#1b6e2d}.p{color:#b32020}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}";

/// The page, and how many wrong answers it shows.
fn render(b: &Bundle, report: Option<&Value>, notes: &mut Vec<String>) -> (String, usize) {
    let kind = b.model.manifest.kind();
    let mut s = String::new();
    let title = format!(
        "qcyn fit report: {} ({} classes)",
        b.model.name,
        b.classes.len()
    );
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let _ = write!(
        s,
        "<h1>{}</h1><div class=\"sub\">written by qcyn {} on {}; model <b>{}</b> ({}, sha256 {}…)</div>",
        escape(&title),
        escape(&b.qcyn_version),
        escape(&b.created),
        escape(&b.model.name),
        b.model.precision,
        escape(b.model.sha256.get(..12).unwrap_or(&b.model.sha256))
    );
    let num = |v: Option<&Value>| v.and_then(Value::as_f64);
    let r = |k: &str| report.and_then(|r| r.get(k));

    // Summary.
    s.push_str("<h2>Accuracy</h2>");
    match (&b.validation, num(r("accuracy"))) {
        (None, None) => s.push_str("<p>No validation images: accuracy was not measured.</p>"),
        (v, acc) => {
            let acc = acc.or(v.as_ref().map(|v| v.accuracy)).unwrap_or(f64::NAN);
            let from = r("accuracy_from")
                .and_then(Value::as_str)
                .unwrap_or("held_out");
            let how = if from == "grouped_cv" {
                "grouped cross-validation over every photo (too few distinct photos held out)"
            } else {
                "the held-out validation images"
            };
            let _ = write!(
                s,
                "<p class=\"big\">accuracy <b>{acc:.3}</b> <span class=\"sub\">from {how}</span></p>"
            );
            if let Some(ci) = r("estimate")
                .and_then(|e| e.get("accuracy_ci95"))
                .and_then(Value::as_array)
            {
                let ci: Vec<f64> = ci.iter().filter_map(Value::as_f64).collect();
                if ci.len() == 2 {
                    let _ = write!(s, "<p>95% interval {:.3} – {:.3}</p>", ci[0], ci[1]);
                }
            }
            if let Some(v) = &b.validation {
                let _ = write!(
                    s,
                    "<p>held-out part: {} images, accuracy {:.3}, macro-F1 {:.3}, log loss {:.3}{}</p>",
                    v.n,
                    v.accuracy,
                    v.macro_f1,
                    v.log_loss,
                    v.calibration
                        .as_ref()
                        .map(|c| format!(", expected calibration error {:.3}", c.ece))
                        .unwrap_or_default()
                );
            }
        }
    }
    if let Some(v) = &b.validation {
        let bias = r("bias")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| v.bias_sentence());
        let _ = write!(s, "<h2>Bias</h2><p class=\"bias\">{}</p>", escape(&bias));
        let _ = write!(
            s,
            "<h2>Confusion matrix (validation)</h2><p class=\"sub\">rows: true class; columns: predicted; shade: share of the row</p>{}",
            svg::confusion(&v.classes, &v.confusion)
        );
        let rows: Vec<(String, f64, f64, usize)> = v
            .per_class
            .iter()
            .map(|c| (c.class.clone(), c.precision, c.recall, c.support))
            .collect();
        let _ = write!(
            s,
            "<h2>Precision and recall per class</h2><p class=\"sub\">(validation images per class)</p>{}",
            svg::precision_recall(&rows)
        );
    }

    // Worst errors.
    s.push_str("<h2>Worst errors</h2>");
    let mut shown = 0;
    match r("validation_images").and_then(Value::as_array) {
        None if report.is_some() => notes.push(
            "this report.json was written by an earlier qcyn and holds no per-image answers, so the worst errors cannot be shown; re-run `qcyn fit` to see them".into(),
        ),
        None => {}
        Some(images) => {
            let wrong = worst_errors(images, &b.classes);
            let _ = write!(
                s,
                "<p class=\"sub\">{} of {} validation images answered wrong; the {} most confidently wrong (lowest probability of the true class) first. {}</p>",
                wrong.len(),
                images.len(),
                wrong.len().min(WORST_ERRORS),
                if kind == ModelKind::Face {
                    "Each thumbnail is the face that gave the label (its box with a margin); the whole photo when no face was found."
                } else {
                    "Each thumbnail is the whole image."
                }
            );
            s.push_str("<div class=\"grid\">");
            for w in wrong.iter().take(WORST_ERRORS) {
                let img = match thumbnail(Path::new(&w.path), w.face) {
                    Ok(uri) => format!("<img alt=\"\" src=\"{uri}\">"),
                    Err(e) => format!("<div class=\"note\">no thumbnail: {}</div>", escape(&e)),
                };
                let probs: Vec<String> = w
                    .ranked
                    .iter()
                    .take(3)
                    .map(|(c, p)| format!("{} {p:.3}", escape(c)))
                    .collect();
                let name = Path::new(&w.path)
                    .file_name()
                    .map_or(w.path.clone(), |n| n.to_string_lossy().to_string());
                let _ = write!(
                    s,
                    "<div class=\"err\">{img}<div>true <b class=\"t\">{}</b></div><div>predicted <b class=\"p\">{}</b></div><div>{}</div><div class=\"path\" title=\"{}\">{}</div></div>",
                    escape(&w.true_class),
                    escape(w.predicted.as_deref().unwrap_or("(unreadable)")),
                    probs.join(", "),
                    escape(&w.path),
                    escape(&name)
                );
                shown += 1;
            }
            s.push_str("</div>");
            if wrong.is_empty() {
                s.push_str("<p>No validation image was answered wrong.</p>");
            }
        }
    }

    // Split.
    s.push_str("<h2>Split</h2>");
    let _ = write!(
        s,
        "<p>data: <code>{}</code></p>",
        escape(&b.training.dataset_root.display().to_string())
    );
    let split = serde_json::to_value(&b.training.split).unwrap_or_default();
    let _ = write!(
        s,
        "<p>split: <code>{}</code></p>",
        escape(&split.to_string())
    );
    for k in ["n_train", "n_val", "n_test", "groups_kept_together"] {
        if let Some(v) = r(k) {
            let _ = write!(s, "<div>{k}: {}</div>", escape(&v.to_string()));
        }
    }
    if let Some(Value::Array(split_notes)) = r("split_notes") {
        for n in split_notes.iter().filter_map(Value::as_str) {
            let _ = write!(s, "<div class=\"note\">{}</div>", escape(n));
        }
    }
    s.push_str("<table><tr><th>class</th><th>trained on</th><th>validated on</th></tr>");
    for (i, c) in b.classes.iter().enumerate() {
        let val = b
            .validation
            .as_ref()
            .and_then(|v| v.per_class.get(i))
            .map_or(String::from("–"), |m| m.support.to_string());
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{val}</td></tr>",
            escape(c),
            b.training.train_counts.get(i).copied().unwrap_or(0)
        );
    }
    s.push_str("</table>");
    for (k, what) in [
        ("skipped", "unreadable images left out"),
        ("no_face", "images without a usable face"),
        ("ambiguous", "ambiguous training images left out"),
        (
            "unmatched",
            "training images not of the class's person, left out",
        ),
    ] {
        if let Some(Value::Array(list)) = r(k) {
            if !list.is_empty() {
                let _ = write!(s, "<div>{what}: {}</div>", list.len());
            }
        }
    }

    // Settings.
    s.push_str("<h2>Settings</h2><table>");
    let t = &b.training;
    let mut row = |k: &str, v: String| {
        let _ = write!(s, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    };
    row("model", format!("{} ({})", b.model.name, b.model.precision));
    row(
        "class weights",
        serde_json::to_value(t.class_weight)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
    );
    if let Some(tail) = &b.tail {
        let ft = r("fine_tuning");
        let get = |k: &str| {
            ft.and_then(|f| f.get(k))
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        };
        let frozen = ft
            .and_then(|f| f.get("frozen_held_out_accuracy"))
            .and_then(Value::as_f64)
            .map_or(String::new(), |a| {
                format!("; the frozen backbone's head on the same split: {a:.3}")
            });
        row(
            "fine-tuning",
            format!(
                "last {} block(s) trained (--unfreeze), tail {}: {} epoch(s) run, epoch {} kept, {}{frozen}",
                tail.blocks,
                tail.file.display(),
                get("epochs_run"),
                get("best_epoch"),
                get("stop_reason").trim_matches('"'),
            ),
        );
    }
    row("L2 strength", format!("{}", b.head.l2));
    if let Some(cv) = &t.cv {
        row(
            "L2 chosen by",
            format!("{}-fold cross-validation ({})", cv.folds, cv.criterion),
        );
        row("feature scaling", cv.scaling.name().to_string());
        if !cv.part_weights.is_empty() {
            row("part weights", format!("{:?}", cv.part_weights));
        }
    }
    row(
        "solver",
        serde_json::to_value(t.refit).map_or(String::new(), |v| v.to_string()),
    );
    if let Some(o) = &b.open_set {
        row(
            "unknown-face threshold",
            format!("cosine {:.3}", o.threshold),
        );
    }
    s.push_str("</table>");
    let params = serde_json::to_string_pretty(&t.params).unwrap_or_default();
    let _ = write!(
        s,
        "<details><summary>all head settings</summary><pre>{}</pre></details>",
        escape(&params)
    );

    if !notes.is_empty() {
        s.push_str("<h2>Notes</h2>");
        for n in notes.iter() {
            let _ = write!(s, "<div class=\"note\">{}</div>", escape(n));
        }
    }
    s.push_str("</body></html>\n");
    (s, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn escape_makes_text_safe_in_html() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

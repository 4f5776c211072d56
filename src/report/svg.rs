//! The report's pictures, as inline SVG: the confusion matrix and per-class precision/recall bars.
use std::fmt::Write;

use super::escape;

/// Longest class name drawn in full on an axis; longer ones are cut with "…".
const NAME_CHARS: usize = 18;

fn short(name: &str) -> String {
    if name.chars().count() <= NAME_CHARS {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(NAME_CHARS - 1).collect();
        s.push('…');
        s
    }
}

/// The confusion matrix: rows are true classes, columns predicted ones; each cell is shaded by its
/// share of the row (blue on the diagonal, red off it) and shows its count.
pub(super) fn confusion(classes: &[String], confusion: &[Vec<usize>]) -> String {
    let k = classes.len();
    let cell: usize = match k {
        0..=6 => 56,
        7..=12 => 40,
        13..=24 => 26,
        _ => 18,
    };
    let font = (cell as f64 * 0.36).clamp(8.0, 15.0);
    let label_w =
        9 * NAME_CHARS.min(classes.iter().map(|c| c.chars().count()).max().unwrap_or(1)) + 16;
    let (left, top) = (label_w + 24, label_w + 24);
    let (w, h) = (left + k * cell + 10, top + k * cell + 10);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="system-ui, sans-serif" role="img" aria-label="confusion matrix">"#
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="14" font-size="13" text-anchor="middle" fill="#444">predicted</text><text x="12" y="{}" font-size="13" text-anchor="middle" fill="#444" transform="rotate(-90 12 {})">true</text>"##,
        left + k * cell / 2,
        top + k * cell / 2,
        top + k * cell / 2
    );
    for (i, c) in classes.iter().enumerate() {
        let name = escape(&short(c));
        let y = top + i * cell + cell / 2;
        let _ = write!(
            s,
            r#"<text x="{}" y="{y}" font-size="{font:.0}" text-anchor="end" dominant-baseline="middle"><title>{}</title>{name}</text>"#,
            left - 6,
            escape(c)
        );
        let x = left + i * cell + cell / 2;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" font-size="{font:.0}" text-anchor="start" transform="rotate(-60 {x} {})"><title>{}</title>{name}</text>"#,
            top - 6,
            top - 6,
            escape(c)
        );
    }
    for (i, row) in confusion.iter().enumerate().take(k) {
        let total: usize = row.iter().sum();
        for (j, &n) in row.iter().enumerate().take(k) {
            let share = if total == 0 {
                0.0
            } else {
                n as f64 / total as f64
            };
            let (x, y) = (left + j * cell, top + i * cell);
            let colour = if i == j {
                format!("rgba(40, 90, 200, {:.3})", 0.08 + 0.85 * share)
            } else if n > 0 {
                format!("rgba(210, 40, 40, {:.3})", 0.15 + 0.8 * share)
            } else {
                "#fafafa".into()
            };
            let _ = write!(
                s,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#ddd"><title>true {} → predicted {}: {n} of {total}</title></rect>"##,
                escape(&classes[i]),
                escape(&classes[j])
            );
            if n > 0 && cell >= 18 {
                let ink = if share > 0.55 { "#fff" } else { "#222" };
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" font-size="{font:.0}" text-anchor="middle" dominant-baseline="middle" fill="{ink}">{n}</text>"#,
                    x + cell / 2,
                    y + cell / 2
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// Per class, two bars: precision and recall (0 to 1), with their values.
pub(super) fn precision_recall(rows: &[(String, f64, f64, usize)]) -> String {
    let bar_w = 320.0;
    let label_w =
        9 * NAME_CHARS.min(rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(1)) + 60;
    let row_h = 34;
    let (w, h) = (label_w as f64 + bar_w + 70.0, 30 + rows.len() * row_h + 6);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg width="{w:.0}" height="{h}" viewBox="0 0 {w:.0} {h}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="precision and recall per class">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{label_w}" y="6" width="12" height="10" fill="#3a6fd8"/><text x="{}" y="15">precision</text><rect x="{}" y="6" width="12" height="10" fill="#e08a2c"/><text x="{}" y="15">recall</text>"##,
        label_w + 16,
        label_w + 90,
        label_w + 106
    );
    for (i, (class, precision, recall, support)) in rows.iter().enumerate() {
        let y = 26 + i * row_h;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle"><title>{}</title>{} ({support})</text>"#,
            label_w - 6,
            y + 14,
            escape(class),
            escape(&short(class))
        );
        for (k, (v, colour)) in [(precision, "#3a6fd8"), (recall, "#e08a2c")]
            .into_iter()
            .enumerate()
        {
            let by = y + 2 + k * 14;
            let _ = write!(
                s,
                r##"<rect x="{label_w}" y="{by}" width="{bar_w}" height="12" fill="#f0f0f0"/><rect x="{label_w}" y="{by}" width="{:.1}" height="12" fill="{colour}"/><text x="{:.1}" y="{}" font-size="11">{v:.3}</text>"##,
                bar_w * v.clamp(0.0, 1.0),
                label_w as f64 + bar_w + 6.0,
                by + 10
            );
        }
    }
    s.push_str("</svg>");
    s
}

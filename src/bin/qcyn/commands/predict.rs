//! `qcyn predict`: label images with a bundle, as a table, CSV or JSON.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::extract::ExtractOptions;
use qcyn::predict::Probabilities;

use super::{bundle_and_pipeline, open_cache, print_json, resolve_threads, Ctx};
use crate::args;
use crate::outcome;

pub(super) fn run(ctx: &Ctx, a: args::PredictArgs) -> Result<ExitCode> {
    let (bundle, mut pipeline, _env) = bundle_and_pipeline(ctx, &a.bundle, &a.run)?;
    let cache = open_cache(&a.run.cache, &pipeline)?;
    let (paths, mut missing) = qcyn::predict::expand_inputs(&a.paths);
    let workers = resolve_threads(a.run.threads);
    let opts = qcyn::predict::PredictOptions {
        top_k: a.top_k,
        unknown_threshold: a.unknown_threshold,
        extract: ExtractOptions {
            batch: a.run.batch,
            workers,
        },
    };
    let mut predictions = qcyn::predict::predict(
        &mut pipeline,
        cache.as_ref(),
        &bundle,
        &paths,
        &opts,
        &ctx.reporter,
    )?;
    for m in missing.drain(..) {
        predictions.push(qcyn::predict::Prediction {
            path_escaped: qcyn::dataset::escaped_if_not_utf8(&m.path),
            path: m.path,
            label: None,
            probabilities: Default::default(),
            faces: None,
            error: Some(m.reason),
        });
    }
    let failed = predictions.iter().filter(|p| p.error.is_some()).count();
    if ctx.global.json {
        print_json(&predictions)?;
    } else if a.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        let mut header = vec!["path".to_string(), "label".to_string()];
        header.extend(bundle.classes.iter().cloned());
        header.push("error".into());
        w.write_record(&header)?;
        for p in &predictions {
            let mut row = vec![
                p.path.to_string_lossy().to_string(),
                p.label.clone().unwrap_or_default(),
            ];
            for c in &bundle.classes {
                row.push(
                    p.probabilities
                        .get(c)
                        .map(|v| format!("{:.6}", f64::from(v)))
                        .unwrap_or_default(),
                );
            }
            row.push(p.error.clone().unwrap_or_default());
            w.write_record(&row)?;
        }
        w.flush()?;
    } else {
        let show = |probs: &Probabilities| {
            probs
                .iter()
                .map(|(c, p)| format!("{c} {:.3}", f64::from(p)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for p in &predictions {
            match (&p.error, &p.faces) {
                (Some(e), _) => println!("{}	error: {e}", p.path.display()),
                (None, Some(faces)) if !faces.is_empty() => {
                    for (i, f) in faces.iter().enumerate() {
                        let [x, y, w, h] = f.bbox;
                        println!(
                            "{}	face {} at ({x:.0}, {y:.0}, {w:.0}x{h:.0})	{}	{}",
                            p.path.display(),
                            i + 1,
                            f.label,
                            show(&f.probabilities)
                        );
                    }
                }
                _ => println!(
                    "{}	{}	{}",
                    p.path.display(),
                    p.label.as_deref().unwrap_or("-"),
                    show(&p.probabilities)
                ),
            }
        }
    }
    // Each failed image is listed with its error above.
    Ok(outcome::exit_code(failed))
}

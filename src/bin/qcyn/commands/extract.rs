//! `qcyn extract`: compute and cache the feature vector of every image in a dataset.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use qcyn::extract::{self, ExtractOptions};

use super::{load_data, open_cache, print_json, random_weights_warning, threads, Ctx};
use crate::args;
use crate::outcome::LeftOut;

pub(super) fn run(ctx: &Ctx, a: args::ExtractArgs) -> Result<ExitCode> {
    let model = ctx.model_for(&a.model)?;
    let data = load_data(&a.data)?;
    let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
    let cache = open_cache(&a.cache, &pipeline)?;
    if let Some(w) = random_weights_warning(&model) {
        ctx.note(&w);
    }
    let paths: Vec<PathBuf> = data.samples.iter().map(|s| s.path.clone()).collect();
    let opts = ExtractOptions {
        batch: a.batch,
        workers: threads(&a.model),
    };
    let out = extract::extract(&mut pipeline, cache.as_ref(), &paths, opts, &ctx.reporter)?;
    let mut report = out.report;
    // Files the scan passed over are skipped too.
    report.skipped.extend(data.skipped.iter().cloned());
    report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let no_face: Vec<qcyn::dataset::Skipped> = report
        .no_face
        .iter()
        .map(|p| qcyn::dataset::Skipped {
            path: p.clone(),
            reason: "no face found".into(),
        })
        .collect();
    let left_out = LeftOut {
        skipped: &report.skipped,
        no_face: &no_face,
        ..LeftOut::default()
    };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "{} images with {}: {} extracted, {} cached, {} skipped in {:.2} s ({:.1} images/s)",
            report.images,
            match model.precision {
                qcyn::models::Precision::Fp32 => report.model.clone(),
                p => format!("{} ({p})", report.model),
            },
            report.extracted,
            report.cached,
            report.skipped.len(),
            report.seconds,
            report.images_per_s
        );
        if report.corrupt_recomputed > 0 {
            println!(
                "{} damaged cache entries were recomputed",
                report.corrupt_recomputed
            );
        }
        if let Some(dir) = &report.cache_dir {
            println!("cache: {}", dir.display());
        }
        left_out.print();
    }
    Ok(left_out.exit_code())
}

//! `qcyn eval`: score a bundle on labelled images it was not trained on.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::extract::ExtractOptions;

use super::{bundle_and_pipeline, load_data, open_cache, print_json, resolve_threads, Ctx};
use crate::args;
use crate::outcome::LeftOut;

pub(super) fn run(ctx: &Ctx, a: args::EvalArgs) -> Result<ExitCode> {
    let data = load_data(&a.data)?;
    let (bundle, mut pipeline, _env) = bundle_and_pipeline(ctx, &a.bundle, &a.run)?;
    let cache = open_cache(&a.run.cache, &pipeline)?;
    let workers = resolve_threads(a.run.threads);
    let report = qcyn::eval::evaluate_bundle(
        &mut pipeline,
        cache.as_ref(),
        &bundle,
        &data,
        ExtractOptions {
            batch: a.run.batch,
            workers,
        },
        &ctx.reporter,
    )?;
    let left_out = LeftOut {
        skipped: &report.skipped,
        no_face: &report.no_face,
        ambiguous: &report.ambiguous,
        ..LeftOut::default()
    };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "{} images of the bundle's classes ({} training images left out)",
            report.n, report.excluded_training_images
        );
        print!("{}", report.report.human());
        if !report.unknown_classes.is_empty() {
            println!(
                "classes the bundle does not know: {}",
                report.unknown_classes.join(", ")
            );
        }
        if let Some(o) = &report.open_set {
            println!(
                "unknown threshold: {:.1}% of {} known faces rejected; {:.1}% of {} strangers rejected",
                o.false_reject_rate * 100.0,
                o.knowns,
                o.stranger_rejection_rate * 100.0,
                o.strangers
            );
        }
        left_out.print();
    }
    Ok(left_out.exit_code())
}

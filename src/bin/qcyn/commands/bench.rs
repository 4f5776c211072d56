//! `qcyn bench`: backbone latency and throughput, alone and from image files.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use qcyn::dataset;

use super::{print_json, random_weights_warning, session_options, threads, Ctx};
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::BenchArgs) -> Result<ExitCode> {
    let (model, bundled) = match &a.bundle {
        Some(b) => {
            let run = args::RunArgs {
                cache: args::CacheArgs {
                    cache: None,
                    no_cache: true,
                },
                threads: a.model.threads,
                device: a.model.device,
                precision: None,
                batch: None,
            };
            let (bundle, pipeline, env) = super::bundle_and_pipeline(ctx, b, &run)?;
            (pipeline.model.clone(), Some((bundle, pipeline, env)))
        }
        None => (ctx.model_for(&a.model)?, None),
    };
    let limits = qcyn::bench::BenchLimits {
        batches: a.batch.clone(),
        warmup: a.warmup,
        max_time: Duration::from_secs_f64(a.seconds.max(0.0)),
        ..Default::default()
    };
    let images = match &a.images {
        Some(dir) => {
            let data = dataset::scan(dir).or_else(|_| dataset::flat(dir))?;
            data.samples.into_iter().map(|s| s.path).collect()
        }
        None => Vec::new(),
    };
    let opts = session_options(&a.model);
    let (mut pipeline, _env, tail) = match bundled {
        Some((bundle, pipeline, env)) => (pipeline, env, bundle.tail),
        None => {
            let (pipeline, env) = ctx.pipeline(&model, &a.model)?;
            (pipeline, env, None)
        }
    };
    let sha256 = pipeline.identity.sha256.clone();
    if let Some(w) = random_weights_warning(&model) {
        ctx.note(&w);
    }
    let (results, whole) = qcyn::bench::run(
        &mut pipeline,
        &images,
        &limits,
        threads(&a.model),
        &ctx.reporter,
    )
    .context("benchmark failed")?;
    // The images once more, as `extract` runs them.
    let extract = if images.is_empty() {
        None
    } else {
        let opts = qcyn::extract::ExtractOptions {
            batch: None,
            workers: threads(&a.model),
        };
        let out = qcyn::extract::extract(&mut pipeline, None, &images, opts, &ctx.reporter)
            .context("benchmark failed")?;
        Some(qcyn::bench::ExtractFigure::of(&out.report))
    };
    let mut notes = Vec::new();
    notes.extend(random_weights_warning(&model));
    if let Some(t) = &tail {
        notes.push(format!(
            "the bundle's backbone: the frozen prefix of `{}`, then its trained tail {} (fit --unfreeze {})",
            model.manifest.name,
            t.file.display(),
            t.blocks
        ));
    }
    notes.push("`results`: backbone alone on prepared inputs; `pipeline`: read → decode → preprocess → backbone from files, one session; `extract`: the files once through extract (one session per thread on a CPU)".into());
    let report = qcyn::bench::BenchReport {
        model: model.manifest.name.clone(),
        sha256,
        random_weights: model.manifest.random_weights,
        precision: model.precision,
        provider: opts.device.provider_name().into(),
        threads: opts.threads,
        results,
        pipeline: whole,
        images: a.images.clone(),
        extract,
        notes,
    };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "model {} {} ({}), sha256 {}, {} with {} threads",
            report.model,
            report.precision,
            if report.random_weights {
                "RANDOM weights: latency only"
            } else {
                "trained weights"
            },
            report.sha256,
            report.provider,
            report.threads,
        );
        let table = |title: &str, rows: &[qcyn::bench::BenchResult]| {
            println!("{title}");
            println!(
                "  {:>5} {:>10} {:>10} {:>10} {:>6}",
                "batch", "p50 ms", "p95 ms", "images/s", "runs"
            );
            for r in rows {
                println!(
                    "  {:>5} {:>10.2} {:>10.2} {:>10.1} {:>6}",
                    r.batch, r.p50_ms, r.p95_ms, r.images_per_s, r.iterations
                );
            }
        };
        table("backbone alone:", &report.results);
        if let Some(p) = &report.pipeline {
            table("read → decode → preprocess → backbone:", p);
        }
        if let Some(e) = &report.extract {
            println!(
                "extract (no cache, {} session{} side by side): {} images in {:.2} s, {:.1} images/s",
                e.sessions,
                if e.sessions == 1 { "" } else { "s" },
                e.images,
                e.seconds,
                e.images_per_s
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

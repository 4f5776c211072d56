//! One function per command: resolve settings, call the library, print results.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use qcyn::backbone::{Device, SessionOptions};
use qcyn::cache::FeatureCache;
use qcyn::dataset::{self, Dataset};
use qcyn::extract::{self, ExtractOptions, Pipeline};
use qcyn::models::{Model, Registry};
use qcyn::progress::Reporter;
use serde_json::json;

use crate::args::{self, Cli, Command};
use crate::reporter::Bars;

/// Exit code when the work is done but some images were skipped.
const EXIT_SKIPPED: u8 = 3;

/// Settings every command shares, resolved once.
struct Ctx {
    global: args::GlobalArgs,
    reporter: Bars,
}

impl Ctx {
    fn registry(&self) -> Result<Registry> {
        let dir = self
            .global
            .models_dir
            .clone()
            .unwrap_or_else(qcyn::runtime::default_models_dir);
        Ok(Registry::load(&dir)?)
    }

    fn model(&self, name: &str) -> Result<Model> {
        Ok(self.registry()?.get(name)?)
    }

    /// Loads ONNX Runtime and builds the process's environment (the binary's job, not the library's).
    fn environment(&self) -> Result<ort::environment::Environment> {
        let path = qcyn::runtime::locate_dylib(self.global.ort_dylib.as_deref())?;
        let builder = ort::init_from(&path).map_err(|e| {
            qcyn::Error::config(
                format!("cannot load ONNX Runtime from {}: {e}", path.display()),
                Some(
                    "run scripts/setup to fetch onnxruntime 1.32.0, or pass --ort-dylib PATH"
                        .into(),
                ),
            )
        })?;
        Ok(builder.with_name("qcyn").build()?)
    }

    fn note(&self, text: &str) {
        self.reporter.message(text);
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        reporter: Bars::new(cli.global.quiet),
        global: cli.global,
    };
    match cli.command {
        Command::Extract(a) => cmd_extract(&ctx, a),
        Command::Models => cmd_models(&ctx),
        Command::Bench(a) => cmd_bench(&ctx, a),
    }
}

fn threads(model: &args::ModelArgs) -> usize {
    model
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

fn session_options(model: &args::ModelArgs) -> SessionOptions {
    SessionOptions {
        threads: threads(model),
        device: match model.device {
            args::DeviceArg::Cpu => Device::Cpu,
            args::DeviceArg::Cuda => Device::Cuda,
        },
    }
}

/// Reads the labelled images named by the data arguments.
fn load_data(data: &args::DataArgs) -> Result<Dataset> {
    match (&data.data, &data.lists) {
        (Some(dir), None) => Ok(dataset::scan(dir)?),
        (None, Some(lists)) => Ok(dataset::lists::read(lists, data.base.as_deref())?.dataset),
        _ => anyhow::bail!("give a dataset folder or --lists DIR"),
    }
}

fn open_cache(cache: &args::CacheArgs, pipeline: &Pipeline) -> Result<Option<FeatureCache>> {
    if cache.no_cache {
        return Ok(None);
    }
    let root = cache
        .cache
        .clone()
        .unwrap_or_else(qcyn::cache::default_root);
    let id = &pipeline.identity;
    Ok(Some(FeatureCache::open(
        &root,
        &id.model,
        &id.sha256,
        &id.preprocess_id,
    )?))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn random_weights_warning(model: &Model) -> Option<String> {
    model.manifest.random_weights.then(|| {
        format!(
            "warning: model `{}` has RANDOM weights: figures are for latency only, its features carry no information",
            model.manifest.name
        )
    })
}

fn cmd_extract(ctx: &Ctx, a: args::ExtractArgs) -> Result<ExitCode> {
    let model = ctx.model(&a.model.model)?;
    if a.batch == 0 {
        anyhow::bail!(qcyn::Error::config("--batch must be at least 1", None));
    }
    let data = load_data(&a.data)?;
    let env = ctx.environment()?;
    let mut pipeline = Pipeline::open(&env, &model, session_options(&a.model))?;
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
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "{} images with {}: {} extracted, {} cached, {} skipped in {:.2} s ({:.1} images/s)",
            report.images,
            report.model,
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
        for s in &report.skipped {
            println!("skipped {}: {}", s.path.display(), s.reason);
        }
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

fn cmd_models(ctx: &Ctx) -> Result<ExitCode> {
    let registry = ctx.registry()?;
    let mut rows = Vec::new();
    for m in &registry.models {
        let man = &m.manifest;
        let files: Vec<PathBuf> = match man.kind {
            qcyn::models::ModelKind::Whole => m.onnx_path().into_iter().collect(),
            qcyn::models::ModelKind::Face => ["detector", "embedder"]
                .iter()
                .filter_map(|k| {
                    let t = if *k == "detector" {
                        &man.detector
                    } else {
                        &man.embedder
                    };
                    t.as_ref()
                        .and_then(|t| t.get("file"))
                        .and_then(|f| f.as_str())
                        .map(|f| m.resolve(f.as_ref()))
                })
                .collect(),
        };
        let available = !files.is_empty() && files.iter().all(|f| f.is_file());
        let (size, dim) = match (&man.input, &man.output) {
            (Some(i), Some(o)) => (format!("{}x{}", i.width, i.height), o.dim),
            _ => {
                let e = man.embedder.as_ref();
                let get = |k: &str| {
                    e.and_then(|t| t.get(k))
                        .and_then(|v| v.as_integer())
                        .unwrap_or(0)
                };
                (format!("{0}x{0} faces", get("size")), get("dim") as usize)
            }
        };
        let sha = man.sha256.clone().or_else(|| {
            man.embedder
                .as_ref()
                .and_then(|t| t.get("sha256"))
                .and_then(|v| v.as_str())
                .map(String::from)
        });
        rows.push(json!({
            "name": man.name,
            "kind": man.kind,
            "path": files.first(),
            "files": files,
            "sha256": sha,
            "available": available,
            "random_weights": man.random_weights,
            "input": size,
            "feature_dim": dim,
            "licence": man.licence,
            "source": man.source,
            "description": man.description,
            "manifest": m.manifest_path,
        }));
    }
    if ctx.global.json {
        print_json(&rows)?;
    } else {
        println!(
            "{:<20} {:<16} {:>6}  {:<9} {:<7} licence",
            "name", "input", "dim", "available", "weights"
        );
        for r in &rows {
            println!(
                "{:<20} {:<16} {:>6}  {:<9} {:<7} {}",
                r["name"].as_str().unwrap_or(""),
                r["input"].as_str().unwrap_or(""),
                r["feature_dim"],
                if r["available"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                if r["random_weights"].as_bool() == Some(true) {
                    "RANDOM"
                } else {
                    "trained"
                },
                r["licence"].as_str().unwrap_or("")
            );
        }
        println!("models folder: {}", registry.dir.display());
        if rows.iter().any(|r| r["available"].as_bool() != Some(true)) {
            println!(
                "missing files are built by {}",
                qcyn::runtime::project_dir().join("scripts/setup").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_bench(ctx: &Ctx, a: args::BenchArgs) -> Result<ExitCode> {
    let model = ctx.model(&a.model.model)?;
    let limits = qcyn::bench::BenchLimits {
        batches: a.batch.clone(),
        warmup: a.warmup,
        max_time: Duration::from_secs_f64(a.seconds.max(0.0)),
        ..Default::default()
    };
    let images = match &a.images {
        Some(dir) => {
            let data = dataset::scan(dir).or_else(|_| flat_images(dir))?;
            data.samples.into_iter().map(|s| s.path).collect()
        }
        None => Vec::new(),
    };
    let env = ctx.environment()?;
    let opts = session_options(&a.model);
    let mut pipeline = Pipeline::open(&env, &model, opts)?;
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
    let mut notes = Vec::new();
    notes.extend(random_weights_warning(&model));
    notes.push("`results`: backbone alone on prepared inputs; `pipeline`: read → decode → preprocess → backbone from files".into());
    let report = qcyn::bench::BenchReport {
        model: model.manifest.name.clone(),
        sha256,
        random_weights: model.manifest.random_weights,
        provider: opts.device.provider_name().into(),
        threads: opts.threads,
        results,
        pipeline: whole,
        images: a.images.clone(),
        notes,
    };
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "model {} ({}), sha256 {}, {} with {} threads{}",
            report.model,
            if report.random_weights {
                "RANDOM weights: latency only"
            } else {
                "trained weights"
            },
            report.sha256,
            report.provider,
            report.threads,
            ""
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
    }
    Ok(ExitCode::SUCCESS)
}

/// A folder of images without class sub-folders, for `bench --images`.
fn flat_images(dir: &std::path::Path) -> Result<Dataset> {
    let mut samples = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let p = e?.path();
        if p.is_file() && dataset::has_image_extension(&p) {
            samples.push(dataset::Sample { path: p, class: 0 });
        }
    }
    samples.sort_by(|a, b| a.path.cmp(&b.path));
    if samples.is_empty() {
        anyhow::bail!("no images in {}", dir.display());
    }
    Ok(Dataset {
        root: dir.to_path_buf(),
        classes: vec!["images".into()],
        samples,
        skipped: vec![],
    })
}

//! One function per command: resolve settings, call the library, print results.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use linfa::ParamGuard;
use qcyn::backbone::{Device, SessionOptions};
use qcyn::bundle::{Bundle, SplitSource};
use qcyn::cache::FeatureCache;
use qcyn::dataset::{self, Dataset};
use qcyn::extract::{self, ExtractOptions, Pipeline};
use qcyn::head::{ClassWeight, SoftmaxParams};
use qcyn::models::{Model, Registry};
use qcyn::progress::Reporter;
use qcyn::split::{SplitManifest, SplitRule, SplitSpec};
use qcyn::train::{FitOptions, TrainingData};
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

    /// The model asked for, or the default: Xception71 (the tutorial's) when its pretrained
    /// weights are installed, else MobileNetV2.
    fn model_or_default(&self, name: Option<&str>) -> Result<Model> {
        let registry = self.registry()?;
        match name {
            Some(name) => Ok(registry.get(name)?),
            None => Ok(registry.get(qcyn::models::default_model_name(&registry))?),
        }
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

    /// The model's pipeline as the model options ask (threads, device, face options), with the
    /// environment it runs in (kept alive beside it).
    fn pipeline(
        &self,
        model: &Model,
        args: &args::ModelArgs,
    ) -> Result<(Pipeline, ort::environment::Environment)> {
        let env = self.environment()?;
        let pipeline = Pipeline::open_with(&env, model, session_options(args), face_options(args))?;
        Ok((pipeline, env))
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
        Command::Split(a) => cmd_split(&ctx, a),
        Command::Fit(a) => cmd_fit(&ctx, a),
        Command::Eval(a) => cmd_eval(&ctx, a),
        Command::Predict(a) => cmd_predict(&ctx, a),
        Command::Faces(a) => cmd_faces(&ctx, a),
    }
}

fn split_spec(rule: &args::SplitRuleArgs) -> Result<SplitSpec> {
    let rule_kind = match (rule.val_per_class, rule.val_fraction) {
        (Some(n), _) => SplitRule::ValPerClass { n },
        (None, Some(f)) => {
            if !(f > 0.0 && f < 1.0) {
                anyhow::bail!(qcyn::Error::config(
                    format!("--val-fraction must be between 0 and 1 (exclusive), not {f}"),
                    Some("e.g. --val-fraction 0.2 holds out a fifth of every class".into())
                ));
            }
            SplitRule::ValFraction { f }
        }
        (None, None) => SplitRule::ValFraction { f: 0.2 },
    };
    Ok(SplitSpec {
        rule: rule_kind,
        test_per_class: rule.test_per_class,
        seed: rule.seed,
    })
}

/// The labelled images of `fit` and how they are split.
fn training_data(a: &args::FitArgs) -> Result<TrainingData> {
    if let Some(lists) = &a.data.lists {
        let read = dataset::lists::read(lists, a.data.base.as_deref())?;
        let base = read.dataset.root.clone();
        return Ok(TrainingData {
            dataset: read.dataset,
            split: read.split,
            source: SplitSource::Lists {
                dir: lists.clone(),
                base,
            },
        });
    }
    let dir = a
        .data
        .data
        .as_ref()
        .expect("clap requires DATA without --lists");
    let dataset = dataset::scan(dir)?;
    if let Some(file) = &a.split {
        let manifest = SplitManifest::read(file)?;
        let resolved = manifest.resolve(&dataset)?;
        let mut dataset = dataset;
        for &i in &resolved.unlisted {
            dataset.skipped.push(dataset::Skipped {
                path: dataset.samples[i].path.clone(),
                reason: format!(
                    "not in the split manifest {} (added after it was made); re-run `qcyn split` to use it",
                    file.display()
                ),
            });
        }
        return Ok(TrainingData {
            dataset,
            split: resolved.split,
            source: SplitSource::Manifest { path: file.clone() },
        });
    }
    let spec = split_spec(&a.rule)?;
    let split = qcyn::split::stratified(&dataset, &spec)?;
    Ok(TrainingData {
        dataset,
        split,
        source: SplitSource::Rule {
            spec,
            manifest: None,
        },
    })
}

fn cmd_split(ctx: &Ctx, a: args::SplitArgs) -> Result<ExitCode> {
    let spec = split_spec(&a.rule)?;
    let data = load_data(&a.data)?;
    let split = qcyn::split::stratified(&data, &spec)?;
    let manifest = SplitManifest::new(&data, &split, Some(&spec))?;
    manifest.write(&a.out)?;
    if let Some(dir) = &a.write_lists {
        dataset::lists::write(dir, &data, &split)?;
    }
    let counts = split.class_counts(&data);
    if ctx.global.json {
        let per_class: Vec<_> = data
            .classes
            .iter()
            .zip(&counts)
            .map(|(c, n)| json!({"class": c, "train": n[0], "val": n[1], "test": n[2]}))
            .collect();
        print_json(&json!({
            "classes": data.classes,
            "n_train": split.train.len(),
            "n_val": split.val.len(),
            "n_test": split.test.len(),
            "per_class": per_class,
            "seed": spec.seed,
            "rule": spec.rule,
            "manifest": a.out,
            "lists": a.write_lists,
            "skipped": data.skipped,
        }))?;
    } else {
        println!("{:<24} {:>6} {:>6} {:>6}", "class", "train", "val", "test");
        for (c, n) in data.classes.iter().zip(&counts) {
            println!("{:<24} {:>6} {:>6} {:>6}", c, n[0], n[1], n[2]);
        }
        println!(
            "{} train, {} val, {} test ({}, seed {}); manifest: {}",
            split.train.len(),
            split.val.len(),
            split.test.len(),
            spec.rule.as_flag(),
            spec.seed,
            a.out.display()
        );
        if let Some(dir) = &a.write_lists {
            println!("list files: {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_fit(ctx: &Ctx, a: args::FitArgs) -> Result<ExitCode> {
    let model = ctx.model_or_default(a.model.model.as_deref())?;
    if model.manifest.random_weights {
        anyhow::bail!(qcyn::Error::config(
            format!(
                "model `{}` has random weights: its features carry no information to learn from",
                model.manifest.name
            ),
            Some(
                "use --model mobilenetv2 (or export the real weights, see the model's manifest)"
                    .into()
            )
        ));
    }
    let mut params = SoftmaxParams::new()
        .folds(a.folds)
        .seed(a.rule.seed)
        .class_weight(match a.class_weight {
            args::ClassWeightArg::None => ClassWeight::None,
            args::ClassWeightArg::Balanced => ClassWeight::Balanced,
        });
    if let Some(grid) = &a.l2 {
        params = params.l2_grid(grid.clone());
    }
    let params = params.check().map_err(qcyn::Error::from)?;
    if a.out.is_file() && a.out.extension().is_none_or(|e| e != "json") {
        anyhow::bail!(qcyn::Error::bad_file(
            &a.out,
            "--out is an existing file, not a bundle folder",
            Some("give a folder (it is created) or a path ending in .json".into())
        ));
    }
    let data = training_data(&a)?;
    let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
    let cache = open_cache(&a.cache, &pipeline)?;
    let opts = FitOptions {
        params,
        extract: ExtractOptions {
            batch: a.batch,
            workers: threads(&a.model),
        },
        false_reject_rate: a.false_reject_rate,
        face: face_options(&a.model),
    };
    let (_, report) = qcyn::train::fit(
        &mut pipeline,
        cache.as_ref(),
        &data,
        &opts,
        &a.out,
        &ctx.reporter,
    )?;

    if ctx.global.json {
        print_json(&report)?;
    } else {
        print!("{}", qcyn::train::human(&report));
    }
    let all_used =
        report.skipped.is_empty() && report.no_face.is_empty() && report.ambiguous.is_empty();
    Ok(if all_used {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

/// Loads a bundle and the model it names, checked against each other.
fn bundle_and_pipeline(
    ctx: &Ctx,
    bundle: &std::path::Path,
    threads: Option<usize>,
) -> Result<(Bundle, Pipeline, ort::environment::Environment)> {
    let bundle = Bundle::load(&qcyn::train::bundle_path(bundle))?;
    let model = ctx.model(&bundle.model.name)?;
    let env = ctx.environment()?;
    let threads = resolve_threads(threads);
    let pipeline = Pipeline::open_with(
        &env,
        &model,
        SessionOptions {
            threads,
            device: Device::Cpu,
        },
        bundle.face_options.unwrap_or_default(),
    )?;
    bundle.check_model(&model, &pipeline.identity.sha256)?;
    Ok((bundle, pipeline, env))
}

fn cmd_eval(ctx: &Ctx, a: args::EvalArgs) -> Result<ExitCode> {
    let data = load_data(&a.data)?;
    let (bundle, mut pipeline, _env) = bundle_and_pipeline(ctx, &a.bundle, a.run.threads)?;
    let cache = open_cache(&a.run.cache, &pipeline)?;
    let workers = resolve_threads(a.run.threads);
    let report = qcyn::train::evaluate_bundle(
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
        for s in &report.skipped {
            println!("skipped {}: {}", s.path.display(), s.reason);
        }
        for p in &report.no_face {
            println!("no face: {}", p.display());
        }
        for a in &report.ambiguous {
            println!("ambiguous: {}: {}", a.path.display(), a.reason);
        }
    }
    let all_used =
        report.skipped.is_empty() && report.no_face.is_empty() && report.ambiguous.is_empty();
    Ok(if all_used {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

fn cmd_predict(ctx: &Ctx, a: args::PredictArgs) -> Result<ExitCode> {
    let (bundle, mut pipeline, _env) = bundle_and_pipeline(ctx, &a.bundle, a.run.threads)?;
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
                        .and_then(|v| v.as_f64())
                        .map(|v| format!("{v:.6}"))
                        .unwrap_or_default(),
                );
            }
            row.push(p.error.clone().unwrap_or_default());
            w.write_record(&row)?;
        }
        w.flush()?;
    } else {
        let show = |probs: &serde_json::Map<String, serde_json::Value>| {
            probs
                .iter()
                .map(|(c, p)| format!("{c} {:.3}", p.as_f64().unwrap_or(0.0)))
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
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

fn cmd_faces(ctx: &Ctx, a: args::FacesArgs) -> Result<ExitCode> {
    let model = ctx.model(&a.model)?;
    if model.manifest.kind != qcyn::models::ModelKind::Face {
        anyhow::bail!(qcyn::Error::config(
            format!(
                "`qcyn faces` needs a face model, and `{}` is a whole-image model",
                model.manifest.name
            ),
            Some("use --model face".into())
        ));
    }
    let data = load_data(&a.data)?;
    let env = ctx.environment()?;
    let threads = resolve_threads(a.threads);
    let mut engine = qcyn::face::FaceEngine::open(
        &env,
        &model,
        SessionOptions {
            threads,
            device: Device::Cpu,
        },
        qcyn::face::FaceOptions::default(),
    )?;
    let images: Vec<qcyn::face::sheet::LabelledImage> = data
        .samples
        .iter()
        .map(|s| qcyn::face::sheet::LabelledImage {
            path: s.path.clone(),
            class: data.classes[s.class].clone(),
        })
        .collect();
    let report = qcyn::face::sheet::write_faces(&mut engine, &images, &a.out, &ctx.reporter)?;
    let unreadable: usize = report.classes.iter().map(|c| c.unreadable.len()).sum();
    if ctx.global.json {
        print_json(&report)?;
    } else {
        for c in &report.classes {
            println!(
                "{:<24} {:>4} images, {:>4} faces, {:>3} without a face, {:>3} ambiguous  {}",
                c.class,
                c.images,
                c.faces,
                c.no_face.len(),
                c.ambiguous.len(),
                c.sheet.display()
            );
        }
        println!("crops and contact sheets: {}", report.out.display());
    }
    Ok(if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

/// Threads to use: the request, at most the number of cores (more only slows ONNX Runtime down),
/// or all cores.
fn resolve_threads(requested: Option<usize>) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    requested.unwrap_or(cores).clamp(1, cores)
}

fn threads(model: &args::ModelArgs) -> usize {
    resolve_threads(model.threads)
}

fn face_options(model: &args::ModelArgs) -> qcyn::face::FaceOptions {
    qcyn::face::FaceOptions {
        whole_image_fallback: model.no_face == args::NoFaceArg::Whole,
        ..Default::default()
    }
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
    let model = ctx.model_or_default(a.model.model.as_deref())?;
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
        for p in &report.no_face {
            println!("no face: {}", p.display());
        }
    }
    Ok(if report.skipped.is_empty() && report.no_face.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SKIPPED)
    })
}

fn cmd_models(ctx: &Ctx) -> Result<ExitCode> {
    let registry = ctx.registry()?;
    let default = qcyn::models::default_model_name(&registry);
    let mut rows = Vec::new();
    for m in &registry.models {
        let man = &m.manifest;
        // (file, sha256) of each ONNX file: one for whole-image models, detector and embedder for
        // face models; `path` and `sha256` below are the first.
        let files: Vec<(PathBuf, Option<String>)> = match man.kind {
            qcyn::models::ModelKind::Whole => m
                .onnx_path()
                .into_iter()
                .map(|p| (p, man.sha256.clone()))
                .collect(),
            qcyn::models::ModelKind::Face => [&man.detector, &man.embedder]
                .into_iter()
                .filter_map(|t| {
                    let t = t.as_ref()?;
                    let file = t.get("file")?.as_str()?;
                    let sha = t.get("sha256").and_then(|v| v.as_str()).map(String::from);
                    Some((m.resolve(file.as_ref()), sha))
                })
                .collect(),
        };
        let available = !files.is_empty() && files.iter().all(|(f, _)| f.is_file());
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
        rows.push(json!({
            "name": man.name,
            "kind": man.kind,
            "path": files.first().map(|f| &f.0),
            "sha256": files.first().and_then(|f| f.1.clone()),
            "files": files.iter().map(|(p, sha)| json!({"path": p, "sha256": sha})).collect::<Vec<_>>(),
            "default": man.name == default,
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
                format!(
                    "{}{}",
                    r["name"].as_str().unwrap_or(""),
                    if r["default"] == true { " *" } else { "" }
                ),
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
        println!(
            "* the default model; models folder: {}",
            registry.dir.display()
        );
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
    let model = ctx.model_or_default(a.model.model.as_deref())?;
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
    let opts = session_options(&a.model);
    let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
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
            "model {} ({}), sha256 {}, {} with {} threads",
            report.model,
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

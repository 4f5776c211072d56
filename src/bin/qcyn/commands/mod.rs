//! The commands, one file each, and what they share: the settings context (registry and model
//! lookup, the ONNX Runtime environment, pipelines, the feature cache), threads and JSON output.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use qcyn::backbone::{Device, SessionOptions};
use qcyn::bundle::Bundle;
use qcyn::cache::FeatureCache;
use qcyn::dataset::{self, Dataset};
use qcyn::models::{Model, Precision, Registry};
use qcyn::pipeline::Pipeline;
use qcyn::progress::Reporter;

use crate::args::{self, Cli, Command};
use crate::reporter::Bars;

mod bench;
mod compare;
mod dups;
mod eval;
mod export;
mod extract;
mod faces;
mod fit;
mod models;
mod predict;
mod report;
mod serve;
mod split;

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

    /// The model asked for, or the default ([`qcyn::models::default_model`]: Xception71 when its
    /// pretrained weights are installed, else the fusion of Xception and MobileNetV2).
    fn model_or_default(&self, name: Option<&str>) -> Result<Model> {
        let registry = self.registry()?;
        match name {
            Some(name) => Ok(registry.get(name)?),
            None => Ok(registry.get(&qcyn::models::default_model(&registry).name)?),
        }
    }

    /// The model the model options name (or the default), at the precision they ask for.
    fn model_for(&self, args: &args::ModelArgs) -> Result<Model> {
        let model = self.model_or_default(args.model.as_deref())?;
        Ok(self
            .registry()?
            .with_precision(model, precision(args.precision))?)
    }

    fn model(&self, name: &str) -> Result<Model> {
        Ok(self.registry()?.get(name)?)
    }

    /// Loads ONNX Runtime and builds the process's environment (the binary's job, not the library's).
    fn environment(&self) -> Result<ort::environment::Environment> {
        self.environment_for(Device::Cpu)
    }

    /// The environment for sessions on `device`: `--device cuda` loads the GPU build of ONNX
    /// Runtime that `scripts/setup --gpu` extracted, when it is there.
    fn environment_for(&self, device: Device) -> Result<ort::environment::Environment> {
        let path = qcyn::runtime::locate_dylib_for(
            self.global.ort_dylib.as_deref(),
            device == Device::Cuda,
        )?;
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
        let env = self.environment_for(device(args.device))?;
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
        Command::Extract(a) => extract::run(&ctx, a),
        Command::Models => models::run(&ctx),
        Command::Bench(a) => bench::run(&ctx, a),
        Command::Split(a) => split::run(&ctx, a),
        Command::Dups(a) => dups::run(&ctx, a),
        Command::Fit(a) => fit::run(&ctx, a),
        Command::Eval(a) => eval::run(&ctx, a),
        Command::Compare(a) => compare::run(&ctx, a),
        Command::Predict(a) => predict::run(&ctx, a),
        Command::Faces(a) => faces::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Serve(a) => serve::run(&ctx, a),
        Command::Report(a) => report::run(&ctx, a),
    }
}

/// Loads a bundle and the model it names, checked against each other.
fn bundle_and_pipeline(
    ctx: &Ctx,
    bundle_arg: &Path,
    run: &args::RunArgs,
) -> Result<(Bundle, Pipeline, ort::environment::Environment)> {
    let bundle = Bundle::load(&qcyn::bundle::bundle_path(bundle_arg))?;
    let registry = ctx.registry()?;
    let model = registry.get(&bundle.model.name)?;
    // The bundle's precision unless another is asked for, which check_model then refuses.
    let precision = run.precision.map_or(bundle.model.precision, precision);
    let model = registry.with_precision(model, precision)?;
    let env = ctx.environment_for(device(run.device))?;
    let session = SessionOptions {
        threads: resolve_threads(run.threads),
        device: device(run.device),
    };
    let pipeline = match bundle_tail(&registry, &model, &bundle, bundle_arg)? {
        // Fitted with --unfreeze: the frozen prefix, then the bundle's trained tail.
        Some((spec, trained, file)) => {
            qcyn::unfreeze::tail_pipeline(&env, &model, &spec, &trained, &file, session)?
        }
        None => Pipeline::open_with(
            &env,
            &model,
            session,
            bundle.face_options.unwrap_or_default(),
        )?,
    };
    bundle.check_model(&model, &pipeline.identity.sha256)?;
    Ok((bundle, pipeline, env))
}

/// A bundle fitted with `--unfreeze`: the model's cut point, the trained tail and its file
/// (beside the bundle); `None` for other bundles.
fn bundle_tail(
    registry: &Registry,
    model: &Model,
    bundle: &Bundle,
    bundle_arg: &Path,
) -> Result<Option<(qcyn::models::TailSpec, qcyn::unfreeze::TrainedTail, PathBuf)>> {
    let Some(trained) = &bundle.tail else {
        return Ok(None);
    };
    let spec = model.tail_spec(trained.blocks, &registry.tails())?.clone();
    let (dir, _) = qcyn::bundle::place(&qcyn::bundle::bundle_path(bundle_arg));
    Ok(Some((spec, trained.clone(), dir.join(&trained.file))))
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
        ..quality_options(&model.quality)
    }
}

/// The face options the quality flags ask for (the rest default).
fn quality_options(q: &args::FaceQualityArgs) -> qcyn::face::FaceOptions {
    qcyn::face::FaceOptions {
        score_threshold: q.min_face_score,
        min_face_px: q.min_face_px,
        min_sharpness: q.min_sharpness,
        max_yaw: q.max_yaw,
        ..Default::default()
    }
}

fn session_options(model: &args::ModelArgs) -> SessionOptions {
    SessionOptions {
        threads: threads(model),
        device: device(model.device),
    }
}

fn precision(arg: args::PrecisionArg) -> Precision {
    match arg {
        args::PrecisionArg::Fp32 => Precision::Fp32,
        args::PrecisionArg::Int8 => Precision::Int8,
    }
}

fn device(arg: args::DeviceArg) -> Device {
    match arg {
        args::DeviceArg::Cpu => Device::Cpu,
        args::DeviceArg::Cuda => Device::Cuda,
    }
}

/// Reads the labelled images named by the data arguments.
fn load_data(data: &args::DataArgs) -> Result<Dataset> {
    match (&data.data, &data.lists) {
        (Some(dir), None) => Ok(dataset::scan(dir)?),
        (None, Some(lists)) => Ok(qcyn::split::lists::read(lists, data.base.as_deref())?.dataset),
        _ => anyhow::bail!("give a dataset folder or --lists DIR"),
    }
}

/// The feature cache folder the cache options name (`None` with --no-cache).
fn user_cache_root(cache: &args::CacheArgs) -> Option<PathBuf> {
    (!cache.no_cache).then(|| {
        cache
            .cache
            .clone()
            .unwrap_or_else(qcyn::cache::default_root)
    })
}

/// A cache folder for work that needs one even with --no-cache (the maps of `--unfreeze`): the
/// user's, or a temporary folder, returned so that it lives while it is used.
fn cache_root(cache: &args::CacheArgs) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match user_cache_root(cache) {
        Some(root) => Ok((root, None)),
        None => {
            let tmp = tempfile::tempdir()?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

fn open_cache(cache: &args::CacheArgs, pipeline: &Pipeline) -> Result<Option<FeatureCache>> {
    let Some(root) = user_cache_root(cache) else {
        return Ok(None);
    };
    let id = &pipeline.identity;
    Ok(Some(FeatureCache::open(
        &root,
        &id.model,
        &id.sha256,
        &id.preprocess_id,
    )?))
}

/// The near-duplicates of `data` with `pipeline`'s model (its measured cosine, when it has one),
/// features through `cache`.
fn find_dups(
    ctx: &Ctx,
    pipeline: &mut Pipeline,
    cache: Option<&FeatureCache>,
    data: &Dataset,
    opts: &qcyn::dups::DupsOptions,
    extract: qcyn::extract::ExtractOptions,
) -> Result<qcyn::dups::Dups> {
    let dups = qcyn::dups::find(pipeline, cache, data, opts, extract, &ctx.reporter)?;
    if dups.backbone_runs > 0 {
        ctx.note(&format!(
            "near-duplicates: {} images went through {} (their features are cached for `extract` and `fit`)",
            dups.backbone_runs, pipeline.model.manifest.name
        ));
    }
    Ok(dups)
}

/// The dataset's paths of each group.
fn group_paths(data: &Dataset, groups: &[Vec<usize>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|&i| data.samples[i].path.display().to_string())
                .collect()
        })
        .collect()
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

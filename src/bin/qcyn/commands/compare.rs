//! `qcyn compare`: backbones × heads × class weights over repeated random splits.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::compare::{CompareOptions, HeadKind, ModelFeatures, SplitMethod};
use qcyn::extract::ExtractOptions;
use qcyn::models::{Model, ModelKind, Registry};
use qcyn::pipeline::Pipeline;
use qcyn::split::SplitRule;

use super::{
    device, find_dups, load_data, open_cache, precision, print_json, resolve_threads, Ctx,
};
use crate::args;
use crate::outcome::exit_code;

pub(super) fn run(ctx: &Ctx, a: args::CompareArgs) -> Result<ExitCode> {
    let registry = ctx.registry()?;
    let models = choose_models(&registry, a.models.as_deref())?
        .into_iter()
        .map(|m| registry.with_precision(m, precision(a.precision)))
        .collect::<qcyn::Result<Vec<Model>>>()?;
    let rule = match (a.val_per_class, a.val_fraction) {
        (Some(n), _) => SplitRule::ValPerClass { n },
        (None, Some(f)) => SplitRule::ValFraction { f },
        (None, None) => SplitRule::ValFraction { f: 0.2 },
    };
    let opts = CompareOptions {
        heads: a
            .heads
            .iter()
            .map(|h| match h {
                args::HeadArg::Softmax => HeadKind::Softmax,
                args::HeadArg::Centroid => HeadKind::Centroid,
                args::HeadArg::Knn => HeadKind::Knn,
            })
            .collect(),
        repeats: a.repeats,
        rule,
        seed: a.seed,
        folds: 5,
    };
    let dataset = load_data(&a.data)?;
    let threads = resolve_threads(a.threads);
    let env = ctx.environment_for(device(a.device))?;
    let session = qcyn::backbone::SessionOptions {
        threads,
        device: device(a.device),
    };
    // Leak-proof by default: near-duplicate groups (found with the first whole-image model, whose
    // features are cached for the comparison below) stay on one side of every split.
    let groups = match models
        .iter()
        .find(|m| m.manifest.kind() == ModelKind::Whole)
    {
        Some(model) if !a.group.no_group => {
            let mut pipeline = Pipeline::open(&env, model, session)?;
            let cache = open_cache(&a.cache, &pipeline)?;
            let extract = ExtractOptions {
                batch: a.batch,
                workers: threads,
            };
            let opts = qcyn::dups::DupsOptions::for_model(model);
            find_dups(ctx, &mut pipeline, cache.as_ref(), &dataset, &opts, extract)?.groups
        }
        _ => Vec::new(),
    };
    let grouped_split = |d: &qcyn::dataset::Dataset, s: &qcyn::split::SplitSpec| {
        qcyn::split::grouped(d, s, &groups).map(|g| g.split)
    };
    let method = if a.group.no_group {
        SplitMethod::stratified()
    } else {
        SplitMethod {
            name: "grouped",
            split: &grouped_split,
            groups: &groups,
        }
    };
    // Every split is checked before the compared backbones run.
    let splits = qcyn::compare::splits(&dataset, &opts, method)?;
    let mut features: Vec<ModelFeatures> = Vec::with_capacity(models.len());
    for model in &models {
        ctx.note(&format!(
            "features of {} images from {}",
            dataset.samples.len(),
            model.manifest.name
        ));
        let mut pipeline = Pipeline::open(&env, model, session)?;
        let cache = open_cache(&a.cache, &pipeline)?;
        features.push(qcyn::compare::features(
            &mut pipeline,
            cache.as_ref(),
            &dataset,
            ExtractOptions {
                batch: a.batch,
                workers: threads,
            },
            &ctx.reporter,
        )?);
    }
    if a.unfreeze > 0 {
        let registry = ctx.registry()?;
        let tails = registry.tails();
        let (root, _tmp) = super::cache_root(&a.cache)?;
        let units =
            (!groups.is_empty()).then(|| qcyn::estimate::units(dataset.samples.len(), &groups));
        let seeded: Vec<(u64, &qcyn::split::Split)> = splits
            .iter()
            .enumerate()
            .map(|(r, s)| (opts.spec(r).seed, s))
            .collect();
        for model in &models {
            let spec = match model.tail_spec(a.unfreeze, &tails) {
                Ok(spec) => spec.clone(),
                Err(e) => {
                    ctx.note(&format!("not fine-tuned: {e}"));
                    continue;
                }
            };
            features.push(qcyn::compare::tuned::features(
                &env,
                model,
                &spec,
                &root,
                &dataset,
                &seeded,
                units.as_deref(),
                &qcyn::unfreeze::TrainOptions::default(),
                session,
                ExtractOptions {
                    batch: a.batch,
                    workers: threads,
                },
                &ctx.reporter,
            )?);
        }
    }
    ctx.note("fitting and scoring every recipe on every repeat");
    let report = qcyn::compare::compare(&dataset, &features, &splits, &opts, method)?;
    if ctx.global.json {
        print_json(&report)?;
    } else {
        print!("{}", qcyn::compare::human(&report));
    }
    let left_out: usize = report
        .models
        .iter()
        .map(|m| m.left_out.len())
        .sum::<usize>()
        + report.skipped.len();
    Ok(exit_code(left_out))
}

/// The models named (each must be installed and have pretrained weights), or by default every
/// installed model with pretrained weights that is not a face model.
fn choose_models(registry: &Registry, names: Option<&[String]>) -> Result<Vec<Model>> {
    let installed = |m: &Model| m.files().iter().all(|(p, _)| p.is_file());
    let Some(names) = names else {
        let chosen: Vec<Model> = registry
            .models
            .iter()
            .filter(|m| {
                !m.manifest.random_weights && m.manifest.kind() == ModelKind::Whole && installed(m)
            })
            .cloned()
            .collect();
        if chosen.is_empty() {
            anyhow::bail!(qcyn::Error::config(
                format!(
                    "no installed model with pretrained weights in {}",
                    registry.dir.display()
                ),
                Some(format!(
                    "run {} to build them, or name models with --models",
                    qcyn::runtime::project_dir().join("scripts/setup").display()
                ))
            ));
        }
        return Ok(chosen);
    };
    let mut chosen: Vec<Model> = Vec::new();
    for name in names {
        let model = registry.get(name)?;
        if chosen
            .iter()
            .any(|m| m.manifest.name == model.manifest.name)
        {
            continue;
        }
        if model.manifest.random_weights {
            anyhow::bail!(qcyn::Error::config(
                format!(
                    "model `{}` has random weights: its features carry no information to compare",
                    model.manifest.name
                ),
                Some(
                    "leave it out of --models (or export the real weights, see its manifest)"
                        .into()
                )
            ));
        }
        if let Some((missing, _)) = model.files().into_iter().find(|(p, _)| !p.is_file()) {
            anyhow::bail!(qcyn::Error::config(
                format!(
                    "model `{}` is not installed: {} is missing",
                    model.manifest.name,
                    missing.display()
                ),
                Some(format!(
                    "run {} to build it, or leave it out of --models (`qcyn models` shows what is installed)",
                    qcyn::runtime::project_dir().join("scripts/setup").display()
                ))
            ));
        }
        chosen.push(model);
    }
    Ok(chosen)
}

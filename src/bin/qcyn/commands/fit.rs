//! `qcyn fit`: train the head on cached features and write a bundle.

use std::process::ExitCode;

use anyhow::Result;
use linfa::ParamGuard;
use qcyn::cache::FeatureCache;
use qcyn::dataset;
use qcyn::dups::DupsOptions;
use qcyn::extract::ExtractOptions;
use qcyn::fit::{FitOptions, TrainingData};
use qcyn::head::{ClassWeight, Scaling, SoftmaxParams};

use super::split::split_spec;
use super::{face_options, find_dups, open_cache, print_json, session_options, threads, Ctx};
use crate::args;
use crate::outcome::LeftOut;

pub(super) fn run(ctx: &Ctx, a: args::FitArgs) -> Result<ExitCode> {
    let model = ctx.model_for(&a.model)?;
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
        })
        .scalings(match a.scaling {
            args::ScalingArg::Auto => vec![Scaling::Feature, Scaling::Part],
            args::ScalingArg::Feature => vec![Scaling::Feature],
            args::ScalingArg::Part => vec![Scaling::Part],
        });
    if let Some(grid) = &a.l2 {
        params = params.l2_grid(grid.clone());
    }
    let params = params.check().map_err(qcyn::Error::from)?;
    if a.unfreeze.resume && a.unfreeze.unfreeze == 0 {
        anyhow::bail!(qcyn::Error::config(
            "--resume continues an interrupted `fit --unfreeze N`, but --unfreeze is not given",
            Some("repeat the interrupted command with --resume added (the same --unfreeze, data and options)".into())
        ));
    }
    // --unfreeze: the cut point and the training options are checked before any work.
    let tail_spec = match a.unfreeze.unfreeze {
        0 => None,
        n => Some(model.tail_spec(n, &ctx.registry()?.tails())?.clone()),
    };
    let train_opts = train_options(&a);
    train_opts.check()?;
    if a.out.is_file() && a.out.extension().is_none_or(|e| e != "json") {
        anyhow::bail!(qcyn::Error::bad_file(
            &a.out,
            "--out is an existing file, not a bundle folder",
            Some("give a folder (it is created) or a path ending in .json".into())
        ));
    }
    let (mut pipeline, env) = ctx.pipeline(&model, &a.model)?;
    let extract = ExtractOptions {
        batch: a.batch,
        workers: threads(&a.model),
    };
    let grouping = !a.group.no_group && a.data.lists.is_none() && a.split.is_none();
    // Grouping extracts every image before the split; without the user's cache, a temporary one
    // keeps fit from running the backbone a second time on the same images.
    let temporary = (grouping && a.cache.no_cache)
        .then(tempfile::tempdir)
        .transpose()?;
    let cache = match &temporary {
        Some(dir) => {
            let id = &pipeline.identity;
            Some(FeatureCache::open(
                dir.path(),
                &id.model,
                &id.sha256,
                &id.preprocess_id,
            )?)
        }
        None => open_cache(&a.cache, &pipeline)?,
    };
    let (data, grouping_runs) = if grouping {
        let dataset = dataset::scan(data_dir(&a))?;
        let opts = DupsOptions::for_model(&model);
        let dups = find_dups(ctx, &mut pipeline, cache.as_ref(), &dataset, &opts, extract)?;
        let spec = split_spec(&a.rule)?;
        (
            TrainingData::from_rule_grouped(dataset, spec, &dups.groups)?,
            dups.backbone_runs,
        )
    } else {
        (training_data(&a)?, 0)
    };
    // --unfreeze: the tail is trained first; fit then runs the model as prefix → trained tail,
    // every image's features already in the cache.
    let mut unfreeze = None;
    // With --no-cache, the temporary folder the maps and tail features live in until fit ends.
    let mut _unfreeze_tmp = None;
    let (mut pipeline, cache) = match &tail_spec {
        None => (pipeline, cache),
        Some(spec) => {
            let root = match &temporary {
                Some(dir) => dir.path().to_path_buf(),
                None => {
                    let (root, tmp) = super::cache_root(&a.cache)?;
                    _unfreeze_tmp = tmp;
                    root
                }
            };
            let (bundle_dir, _) = qcyn::bundle::place(&qcyn::bundle::bundle_path(&a.out));
            let ds = &data.dataset;
            let (wanted, paths) = data.fitted();
            let unit = data
                .groups
                .as_ref()
                .map(|g| qcyn::estimate::units(ds.samples.len(), g));
            let train = &data.split.train;
            let labels: Vec<usize> = wanted.iter().map(|&i| ds.samples[i].class).collect();
            let units: Vec<usize> = train
                .iter()
                .map(|&i| unit.as_ref().map_or(i, |u| u[i]))
                .collect();
            let images = qcyn::unfreeze::Images {
                paths: &paths,
                n_train: train.len(),
                labels: &labels,
                units: &units,
            };
            let opts = qcyn::unfreeze::UnfreezeOptions {
                blocks: spec.blocks,
                train: train_opts.clone(),
                resume: a.unfreeze.resume,
            };
            let done = qcyn::unfreeze::unfreeze(
                &env,
                &model,
                spec,
                &root,
                &images,
                &params,
                &opts,
                session_options(&a.model),
                extract,
                &bundle_dir,
                &ctx.reporter,
            )?;
            let tail_pipeline = qcyn::unfreeze::tail_pipeline(
                &env,
                &model,
                spec,
                &done.tail,
                &bundle_dir.join(&done.tail.file),
                session_options(&a.model),
            )?;
            let id = &tail_pipeline.identity;
            let tail_cache = FeatureCache::open(&root, &id.model, &id.sha256, &id.preprocess_id)?;
            unfreeze = Some((done.tail, done.report));
            (tail_pipeline, Some(tail_cache))
        }
    };
    let opts = FitOptions {
        params,
        extract,
        false_reject_rate: a.false_reject_rate,
        face: face_options(&a.model),
        unfreeze,
    };
    let (_, mut report) = qcyn::fit::fit(
        &mut pipeline,
        cache.as_ref(),
        &data,
        &opts,
        &a.out,
        &ctx.reporter,
    )?;
    report.backbone_runs += grouping_runs;
    if let (Some(f), true) = (
        &report.fine_tuning,
        qcyn::bundle::bundle_path(&a.out).ends_with(qcyn::bundle::BUNDLE_FILE),
    ) {
        remove_stale_tails(&report.bundle, &f.tail_file);
    }
    // The page for people beside report.json; the fit itself is done and written either way.
    match qcyn::report::write_beside(&a.out) {
        Ok(page) => ctx.note(&format!("report page: {}", page.path.display())),
        Err(e) => ctx.note(&format!(
            "warning: cannot write the HTML report: {}",
            qcyn::error::chain(&e)
        )),
    }

    if ctx.global.json {
        print_json(&report)?;
    } else {
        print!("{}", qcyn::fit::human(&report));
    }
    // The report's text lists what was left out.
    let left_out = LeftOut {
        skipped: &report.skipped,
        no_face: &report.no_face,
        ambiguous: &report.ambiguous,
        unmatched: &report.unmatched,
    };
    Ok(left_out.exit_code())
}

/// Removes the trained tails of earlier fits from a bundle folder, once the new bundle is written
/// (the bundle names only `keep`).
fn remove_stale_tails(bundle: &std::path::Path, keep: &std::path::Path) {
    let Some(dir) = bundle.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("tail") && name.ends_with(".onnx") && p.file_name() != keep.file_name()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The training settings of `--unfreeze`.
fn train_options(a: &args::FitArgs) -> qcyn::unfreeze::TrainOptions {
    let u = &a.unfreeze;
    qcyn::unfreeze::TrainOptions {
        epochs: u.epochs,
        batch_size: u.batch_size,
        eval_interval: u.eval_interval,
        lr: u.lr,
        l2_sp: u.l2_sp,
        patience: u.patience,
        seed: a.rule.seed,
        ..Default::default()
    }
}

/// The labelled images of `fit` and how they are split: list files, a scanned folder split by a
/// manifest, or by rule.
fn training_data(a: &args::FitArgs) -> Result<TrainingData> {
    if let Some(lists) = &a.data.lists {
        return Ok(TrainingData::from_lists(lists, a.data.base.as_deref())?);
    }
    let dataset = dataset::scan(data_dir(a))?;
    Ok(match &a.split {
        Some(file) => TrainingData::from_manifest(dataset, file)?,
        None => TrainingData::from_rule(dataset, split_spec(&a.rule)?)?,
    })
}

fn data_dir(a: &args::FitArgs) -> &std::path::Path {
    a.data
        .data
        .as_deref()
        .expect("clap requires DATA without --lists")
}

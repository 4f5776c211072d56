//! `qcyn fit`: train the head on cached features and write a bundle.

use std::process::ExitCode;

use anyhow::Result;
use linfa::ParamGuard;
use qcyn::cache::FeatureCache;
use qcyn::dataset;
use qcyn::dups::DupsOptions;
use qcyn::extract::ExtractOptions;
use qcyn::fit::{FitOptions, TrainingData};
use qcyn::head::{ClassWeight, SoftmaxParams};

use super::split::split_spec;
use super::{face_options, find_dups, open_cache, print_json, threads, Ctx};
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
    let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
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
    let opts = FitOptions {
        params,
        extract,
        false_reject_rate: a.false_reject_rate,
        face: face_options(&a.model),
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

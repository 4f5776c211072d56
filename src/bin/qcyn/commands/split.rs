//! `qcyn split`: a stratified, seeded split written as a manifest (and the tutorial's list files).

use std::process::ExitCode;

use anyhow::Result;
use qcyn::dups::DupsOptions;
use qcyn::extract::ExtractOptions;
use qcyn::split::manifest::SplitManifest;
use qcyn::split::{GroupedSplit, SplitRule, SplitSpec};
use serde_json::json;

use super::{find_dups, group_paths, load_data, open_cache, print_json, threads, Ctx};
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::SplitArgs) -> Result<ExitCode> {
    let spec = split_spec(&a.rule)?;
    let data = load_data(&a.data)?;
    let (grouped, backbone_runs) = if a.group.no_group {
        let split = qcyn::split::stratified(&data, &spec)?;
        (
            GroupedSplit {
                split,
                ..GroupedSplit::default()
            },
            0,
        )
    } else {
        let model = ctx.model_for(&a.model)?;
        let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
        let cache = open_cache(&a.cache, &pipeline)?;
        let extract = ExtractOptions {
            batch: None,
            workers: threads(&a.model),
        };
        let opts = DupsOptions::for_model(&model);
        let dups = find_dups(ctx, &mut pipeline, cache.as_ref(), &data, &opts, extract)?;
        (
            qcyn::split::grouped(&data, &spec, &dups.groups)?,
            dups.backbone_runs,
        )
    };
    let split = &grouped.split;
    let mut manifest = SplitManifest::new(&data, split, Some(&spec))?;
    if !a.group.no_group {
        manifest = manifest.with_groups(&data, &grouped.groups)?;
    }
    manifest.write(&a.out)?;
    if let Some(dir) = &a.write_lists {
        qcyn::split::lists::write(dir, &data, split)?;
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
            "grouping": !a.group.no_group,
            "groups_kept_together": grouped.kept_together(),
            "cross_class": group_paths(&data, &grouped.cross_class),
            "notes": grouped.notes,
            "backbone_runs": backbone_runs,
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
        if !a.group.no_group {
            println!(
                "{} group(s) of near-duplicates kept on one side (--no-group to split image by image)",
                grouped.kept_together()
            );
        }
        for note in &grouped.notes {
            println!("note: {note}");
        }
        for g in group_paths(&data, &grouped.cross_class) {
            println!(
                "likely label error, near-duplicates across classes: {}",
                g.join(", ")
            );
        }
        if let Some(dir) = &a.write_lists {
            println!("list files: {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn split_spec(rule: &args::SplitRuleArgs) -> Result<SplitSpec> {
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

//! `qcyn split`: a stratified, seeded split written as a manifest (and the tutorial's list files).

use std::process::ExitCode;

use anyhow::Result;
use qcyn::split::manifest::SplitManifest;
use qcyn::split::{SplitRule, SplitSpec};
use serde_json::json;

use super::{load_data, print_json, Ctx};
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::SplitArgs) -> Result<ExitCode> {
    let spec = split_spec(&a.rule)?;
    let data = load_data(&a.data)?;
    let split = qcyn::split::stratified(&data, &spec)?;
    let manifest = SplitManifest::new(&data, &split, Some(&spec))?;
    manifest.write(&a.out)?;
    if let Some(dir) = &a.write_lists {
        qcyn::split::lists::write(dir, &data, &split)?;
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

//! `qcyn dups`: near-duplicate groups of a dataset, and the ones that span classes.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::dups::DupsOptions;
use qcyn::extract::ExtractOptions;
use serde_json::json;

use super::{find_dups, group_paths, load_data, open_cache, print_json, threads, Ctx};
use crate::args;
use crate::outcome::exit_code;

pub(super) fn run(ctx: &Ctx, a: args::DupsArgs) -> Result<ExitCode> {
    let model = ctx.model_for(&a.model)?;
    let data = load_data(&a.data)?;
    let (mut pipeline, _env) = ctx.pipeline(&model, &a.model)?;
    let cache = open_cache(&a.cache, &pipeline)?;
    let defaults = DupsOptions::for_model(&model);
    let opts = DupsOptions {
        max_hash_distance: a.max_hash_distance.unwrap_or(defaults.max_hash_distance),
        min_cosine: a.min_cosine.or(defaults.min_cosine),
        ..defaults
    };
    let extract = ExtractOptions {
        batch: a.batch,
        workers: threads(&a.model),
    };
    let dups = find_dups(ctx, &mut pipeline, cache.as_ref(), &data, &opts, extract)?;
    let mut skipped = dups.skipped.clone();
    skipped.extend(data.skipped.iter().cloned());
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let path = |i: usize| data.samples[i].path.display().to_string();
    if ctx.global.json {
        let pairs: Vec<_> = dups
            .pairs
            .iter()
            .map(|p| {
                json!({"a": path(p.a), "b": path(p.b), "by": p.by,
                       "hash_distance": p.hash_distance, "cosine": p.cosine})
            })
            .collect();
        print_json(&json!({
            "groups": group_paths(&data, &dups.groups),
            "cross_class": group_paths(&data, &dups.cross_class),
            "model": model.manifest.name,
            "n_images": data.samples.len(),
            "images_in_groups": dups.groups.iter().map(Vec::len).sum::<usize>(),
            "pairs": pairs,
            "max_hash_distance": opts.max_hash_distance,
            "min_cosine": opts.min_cosine,
            "unhashed": dups.unhashed,
            "backbone_runs": dups.backbone_runs,
            "feature_seconds": dups.feature_seconds,
            "compare_seconds": dups.compare_seconds,
            "skipped": skipped,
        }))?;
    } else {
        for (k, g) in dups.groups.iter().enumerate() {
            let cross = dups.cross_class.contains(g);
            println!(
                "group {} ({} images){}",
                k + 1,
                g.len(),
                if cross {
                    ": spans classes, likely a labelling error"
                } else {
                    ""
                }
            );
            for &i in g {
                println!("  {}  [{}]", path(i), data.classes[data.samples[i].class]);
            }
        }
        println!(
            "{} images, {} in {} group(s) of near-duplicates, {} spanning classes \
             (hash distance <= {}, {}){}",
            data.samples.len(),
            dups.groups.iter().map(Vec::len).sum::<usize>(),
            dups.groups.len(),
            dups.cross_class.len(),
            opts.max_hash_distance,
            match opts.min_cosine {
                Some(c) => format!("{} feature cosine >= {c}", model.manifest.name),
                None => format!("{} gives no feature threshold", model.manifest.name),
            },
            if dups.unhashed > 0 {
                format!(
                    "; {} too flat to hash, matched by content and features only",
                    dups.unhashed
                )
            } else {
                String::new()
            }
        );
        for s in &skipped {
            println!("skipped {}: {}", s.path.display(), s.reason);
        }
    }
    Ok(exit_code(skipped.len()))
}

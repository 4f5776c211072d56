//! `qcyn models`: list the known backbones.

use std::process::ExitCode;

use anyhow::Result;

use super::{print_json, Ctx};

pub(super) fn run(ctx: &Ctx) -> Result<ExitCode> {
    let registry = ctx.registry()?;
    let rows = registry.summaries();
    if ctx.global.json {
        print_json(&rows)?;
    } else {
        println!(
            "{:<22} {:<16} {:>6}  {:<9} {:<7} licence",
            "name", "input", "dim", "available", "weights"
        );
        for r in &rows {
            println!(
                "{:<22} {:<16} {:>6}  {:<9} {:<7} {}",
                format!("{}{}", r.name, if r.default { " *" } else { "" }),
                r.input,
                r.feature_dim,
                if r.available { "yes" } else { "no" },
                if r.random_weights {
                    "RANDOM"
                } else {
                    "trained"
                },
                r.licence
            );
        }
        println!(
            "* the default model; models folder: {}",
            registry.dir.display()
        );
        if let Some(d) = rows.iter().find(|r| r.default) {
            println!(
                "default: {} ({})",
                d.name,
                d.default_reason.as_deref().unwrap_or("")
            );
        }
        let int8 = qcyn::models::int8_models(&registry);
        if !int8.is_empty() {
            println!(
                "int8 graphs (--precision int8, about 2x faster on a CPU): {}",
                int8.join(", ")
            );
        }
        let tails: Vec<String> = registry
            .tails()
            .into_iter()
            .map(|(m, b)| {
                let b: Vec<String> = b.iter().map(|b| b.to_string()).collect();
                format!("{m} ({})", b.join(" or "))
            })
            .collect();
        if !tails.is_empty() {
            println!(
                "cut points for fine-tuning the last block(s) (fit --unfreeze N): {}",
                tails.join(", ")
            );
        }
        println!("speed: mobilenetv2 is about 8x faster than xception and 10x faster than the fusion (see `qcyn bench`); fuse any whole-image models with `--model a+b`");
        if rows.iter().any(|r| !r.available) {
            println!(
                "missing files are built by {}",
                qcyn::runtime::project_dir().join("scripts/setup").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

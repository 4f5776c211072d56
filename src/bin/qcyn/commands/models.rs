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
            "{:<20} {:<16} {:>6}  {:<9} {:<7} licence",
            "name", "input", "dim", "available", "weights"
        );
        for r in &rows {
            println!(
                "{:<20} {:<16} {:>6}  {:<9} {:<7} {}",
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
        if rows.iter().any(|r| !r.available) {
            println!(
                "missing files are built by {}",
                qcyn::runtime::project_dir().join("scripts/setup").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `qcyn report`: a fit's report as one HTML page.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::ReportArgs) -> Result<ExitCode> {
    let written = qcyn::report::write_html(&a.bundle, &a.out)?;
    for note in &written.notes {
        ctx.note(&format!("note: {note}"));
    }
    if ctx.global.json {
        super::print_json(&written)?;
    } else {
        println!("{}", written.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

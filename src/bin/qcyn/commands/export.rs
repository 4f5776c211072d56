//! `qcyn export`: a bundle as one ONNX file.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::bundle::Bundle;

use super::{print_json, Ctx};
use crate::args;

pub(super) fn run(ctx: &Ctx, a: args::ExportArgs) -> Result<ExitCode> {
    let bundle = Bundle::load(&qcyn::bundle::bundle_path(&a.bundle))?;
    let registry = ctx.registry()?;
    // The graph the bundle was fitted on: fp32 or int8.
    let model =
        registry.with_precision(registry.get(&bundle.model.name)?, bundle.model.precision)?;
    let report = qcyn::export::export(&bundle, &model, &a.out)?;
    if ctx.global.json {
        print_json(&report)?;
    } else {
        println!(
            "{}: {} bytes; input {}, output {}",
            report.path.display(),
            report.bytes,
            report.input,
            report.output
        );
        for (k, v) in &report.metadata {
            println!("  {k}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

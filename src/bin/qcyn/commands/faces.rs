//! `qcyn faces`: write the aligned face crops and a contact sheet per class.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::backbone::SessionOptions;

use super::{device, load_data, print_json, resolve_threads, Ctx};
use crate::args;
use crate::outcome;

pub(super) fn run(ctx: &Ctx, a: args::FacesArgs) -> Result<ExitCode> {
    let model = ctx.model(&a.model)?;
    if model.manifest.kind() != qcyn::models::ModelKind::Face {
        anyhow::bail!(qcyn::Error::config(
            format!(
                "`qcyn faces` needs a face model, and `{}` is a whole-image model",
                model.manifest.name
            ),
            Some("use --model face".into())
        ));
    }
    let data = load_data(&a.data)?;
    let env = ctx.environment()?;
    let mut engine = qcyn::face::FaceEngine::open(
        &env,
        &model,
        SessionOptions {
            threads: resolve_threads(a.threads),
            device: device(a.device),
        },
        super::quality_options(&a.quality),
    )?;
    let images: Vec<qcyn::face::sheet::LabelledImage> = data
        .samples
        .iter()
        .map(|s| qcyn::face::sheet::LabelledImage {
            path: s.path.clone(),
            class: data.classes[s.class].clone(),
        })
        .collect();
    let report = qcyn::face::sheet::write_faces(&mut engine, &images, &a.out, &ctx.reporter)?;
    let unreadable: usize = report.classes.iter().map(|c| c.unreadable.len()).sum();
    if ctx.global.json {
        print_json(&report)?;
    } else {
        for c in &report.classes {
            println!(
                "{:<24} {:>4} images, {:>4} faces, {:>3} without a face, {:>3} ambiguous  {}",
                c.class,
                c.images,
                c.faces,
                c.no_face.len(),
                c.ambiguous.len(),
                c.sheet.display()
            );
        }
        println!("crops and contact sheets: {}", report.out.display());
    }
    // Only unreadable files count: images without a face or with several are counted above.
    Ok(outcome::exit_code(unreadable))
}

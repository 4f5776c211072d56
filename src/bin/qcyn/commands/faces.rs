//! `qcyn faces`: write the aligned face crops and a contact sheet per class.

use std::process::ExitCode;

use anyhow::Result;
use qcyn::backbone::SessionOptions;

use super::{device, load_data, open_cache, print_json, resolve_threads, Ctx};
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
    let threads = resolve_threads(a.threads);
    let mut pipeline = qcyn::pipeline::Pipeline::open_with(
        &env,
        &model,
        SessionOptions {
            threads,
            device: device(a.device),
        },
        super::quality_options(&a.quality),
    )?;
    // Faces come through the feature cache like every other command's: only images not in it run
    // through the detector and embedder.
    let cache = open_cache(&a.cache, &pipeline)?;
    let paths: Vec<std::path::PathBuf> = data.samples.iter().map(|s| s.path.clone()).collect();
    let extracted = qcyn::extract::extract(
        &mut pipeline,
        cache.as_ref(),
        &paths,
        qcyn::extract::ExtractOptions {
            batch: Some(16),
            workers: threads,
        },
        &ctx.reporter,
    )?;
    let reasons: std::collections::HashMap<&std::path::Path, &str> = extracted
        .report
        .skipped
        .iter()
        .map(|s| (s.path.as_path(), s.reason.as_str()))
        .collect();
    let faces: Vec<qcyn::face::sheet::ImageFaces> = paths
        .iter()
        .zip(extracted.embeddings)
        .map(|(p, e)| qcyn::face::sheet::ImageFaces {
            faces: e.ok_or_else(|| {
                reasons
                    .get(p.as_path())
                    .copied()
                    .unwrap_or("could not be read")
                    .to_string()
            }),
            ignored: 0,
        })
        .collect();
    let images: Vec<qcyn::face::sheet::LabelledImage> = data
        .samples
        .iter()
        .map(|s| qcyn::face::sheet::LabelledImage {
            path: s.path.clone(),
            class: data.classes[s.class].clone(),
        })
        .collect();
    let fm = qcyn::face::FaceModel::from_model(&model)?;
    let identity = qcyn::face::identity::IdentityOptions {
        match_cosine: fm
            .embedder
            .match_cosine_threshold
            .unwrap_or(qcyn::face::identity::IdentityOptions::default().match_cosine),
        ..Default::default()
    };
    let report =
        qcyn::face::sheet::write_sheets(&fm, &images, &faces, &identity, &a.out, &ctx.reporter)?;
    let unreadable: usize = report.classes.iter().map(|c| c.unreadable.len()).sum();
    if ctx.global.json {
        print_json(&report)?;
    } else {
        for c in &report.classes {
            println!(
                "{:<24} {:>4} images, {:>4} faces, {:>3} without a face, {:>3} ambiguous, {:>3} not the person, {:>3} resolved by identity  {}",
                c.class,
                c.images,
                c.faces,
                c.no_face.len(),
                c.ambiguous.len(),
                c.unmatched.len(),
                c.resolved,
                c.sheet.display()
            );
        }
        println!("crops and contact sheets: {}", report.out.display());
    }
    // Only unreadable files count: images without a face or with several are counted above.
    Ok(outcome::exit_code(unreadable))
}

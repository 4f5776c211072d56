//! `compare --unfreeze N`: a model's fine-tuned recipe beside its frozen ones. On every repeat
//! the tail is trained on that repeat's training part only (as `fit --unfreeze N` would be), and
//! every image is embedded through it; the heads are then fitted and scored as for any model.
use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::environment::Environment;

use crate::backbone::SessionOptions;
use crate::dataset::{Dataset, Skipped};
use crate::error::{Error, Result};
use crate::extract::ExtractOptions;
use crate::head::SoftmaxParams;
use crate::models::{Model, TailSpec};
use crate::progress::Reporter;
use crate::split::Split;
use crate::unfreeze::{self, train, TrainOptions};
use linfa::ParamGuard;

use super::{model_bytes, ModelFeatures};

/// The features of `model` with its last `spec.blocks` block(s) fine-tuned, one set per split:
/// the maps come through their cache in `cache_root` (the prefix runs only on what is missing).
#[allow(clippy::too_many_arguments)]
pub fn features(
    env: &Environment,
    model: &Model,
    spec: &TailSpec,
    cache_root: &Path,
    dataset: &Dataset,
    splits: &[(u64, &Split)],
    units: Option<&[usize]>,
    opts: &TrainOptions,
    session: SessionOptions,
    extract: ExtractOptions,
    reporter: &dyn Reporter,
) -> Result<ModelFeatures> {
    let start = Instant::now();
    let graph = unfreeze::tail_graph(model, spec)?;
    let paths: Vec<PathBuf> = dataset.samples.iter().map(|s| s.path.clone()).collect();
    let maps = unfreeze::maps(
        env, model, spec, cache_root, &paths, session, extract, reporter,
    )?;
    let left_out: Vec<Skipped> = maps
        .maps
        .iter()
        .zip(&paths)
        .filter(|(m, _)| m.is_none())
        .map(|(_, p)| Skipped {
            path: p.clone(),
            reason: "could not be read".into(),
        })
        .collect();
    let present: Vec<usize> = (0..paths.len())
        .filter(|&i| maps.maps[i].is_some())
        .collect();
    let all: Vec<&[f32]> = present
        .iter()
        .map(|&i| maps.maps[i].as_deref().expect("present"))
        .collect();
    let mut per_repeat = Vec::with_capacity(splits.len());
    for (r, &(seed, split)) in splits.iter().enumerate() {
        reporter.message(&format!(
            "fine-tuning `{}`'s last {} block(s) on repeat {} of {}",
            model.manifest.name,
            spec.blocks,
            r + 1,
            splits.len()
        ));
        let rows: Vec<usize> = split
            .train
            .iter()
            .copied()
            .filter(|&i| maps.maps[i].is_some())
            .collect();
        let train_maps: Vec<&[f32]> = rows
            .iter()
            .map(|&i| maps.maps[i].as_deref().expect("kept"))
            .collect();
        let labels: Vec<usize> = rows.iter().map(|&i| dataset.samples[i].class).collect();
        let row_units: Vec<usize> = rows.iter().map(|&i| units.map_or(i, |u| u[i])).collect();
        let params = SoftmaxParams::new()
            .seed(seed)
            .n_classes(dataset.classes.len())
            .check()
            .map_err(Error::from)?;
        let (head, _) =
            unfreeze::probe_head(&graph.tail, &train_maps, &labels, &row_units, &params)?;
        let set = train::TrainSet {
            maps: &train_maps,
            labels: &labels,
            units: &row_units,
        };
        let opts = TrainOptions {
            seed,
            ..opts.clone()
        };
        let outcome = train::train(
            graph.tail.clone(),
            head,
            &set,
            &opts,
            None,
            false,
            "",
            reporter,
        )?;
        let f = train::features(&outcome.tail, &all);
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; paths.len()];
        for (row, &i) in f.outer_iter().zip(&present) {
            vectors[i] = Some(row.to_vec());
        }
        per_repeat.push(vectors);
    }
    Ok(ModelFeatures {
        model: format!("{}+unfreeze{}", model.manifest.name, spec.blocks),
        // The trained tail comes on top of the model: a fine-tuned recipe is never the simpler.
        size_bytes: model_bytes(model)
            + std::fs::metadata(model.resolve(&spec.tail)).map_or(1, |m| m.len().max(1)),
        vectors: per_repeat.first().cloned().unwrap_or_default(),
        left_out,
        backbone_runs: maps.backbone_runs,
        seconds: start.elapsed().as_secs_f64(),
        per_repeat,
    })
}
